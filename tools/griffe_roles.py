"""A griffe extension for the API reference: the docstrings' reST roles become cross-references.

jaxcr's docstrings name other objects as ``:func:`jaxcr.track```, ``:class:`~jaxcr.analysis.Analysis```
and so on (readable in ``help()`` and in an editor). mkdocstrings would print those roles as they
are; this extension, loaded by mkdocs.yml, turns each into an optional autoref to the object's
canonical path (a link where the reference documents the object, plain code where it does not),
so the built site has no raw roles and no dead links.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`(~?)([\w.]+)(?:\(\))?`")


def _canonical(target: str, obj, collection) -> str:
    """The canonical path of ``target`` as written in ``obj``'s docstring (absolute, or relative to
    its module or class), or ``target`` itself when it cannot be found."""
    module = obj if obj.is_module else obj.module
    candidates = [target, f"{module.path}.{target}"]
    if target.startswith("jaxcr.") and target.count(".") == 1:  # a top-level name: jaxcr/_api.py imports it
        candidates.append("jaxcr._api." + target.removeprefix("jaxcr."))
    if obj.parent is not None and not obj.is_module:
        candidates.append(f"{obj.parent.path}.{target}")
    for path in candidates:
        try:
            found = collection.get_member(path)
        except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        try:
            return found.canonical_path
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return path
    return target


class RolesToAutorefs(griffe.Extension):
    """Rewrite the roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg, loader, **kwargs) -> None:
        collection = loader.modules_collection
        for obj in self._walk(pkg, set()):
            doc = obj.docstring
            if doc is None or ":" not in doc.value:
                continue

            def link(match, obj=obj):
                short, target = match.group(1), match.group(2)
                title = target.rsplit(".", 1)[-1] if short else target
                return f'<autoref identifier="{_canonical(target, obj, collection)}" optional><code>{title}</code></autoref>'

            doc.value = ROLE.sub(link, doc.value)

    def _walk(self, obj, seen):
        if obj.path in seen or obj.is_alias:
            return
        seen.add(obj.path)
        yield obj
        for member in obj.members.values():
            if not member.is_alias:
                yield from self._walk(member, seen)
