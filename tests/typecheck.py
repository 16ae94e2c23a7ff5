"""The runtime type checker that jaxtyping applies to jaxcr during the tests (pyproject.toml).

beartype with the PEP 484 numeric tower: an ``int`` is accepted where ``float`` is annotated,
as static type checkers accept it.
"""

from beartype import BeartypeConf, beartype

checker = beartype(conf=BeartypeConf(is_pep484_tower=True))
