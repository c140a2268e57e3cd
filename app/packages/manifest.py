"""SCORM manifests: reading an authoring tool's (version, SCOs, launch files) and writing ours.

An authoring tool's manifest is parsed without DTDs or entities: one that declares any,
in any encoding and at any place, is refused, so no DTD reaches an LMS. ``read_manifest``
gives the launch files of its SCO resources (a deployed package adds the tracker
to each); ``read_scos`` gives each SCO item of the default organisation as the
LMS would launch it (file, query string from the href and ``adlcp:parameters``,
the item's learner-facing settings), which is what a remote package needs:
one item of its own per SCO.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as defused

from app.packages.errors import PackageError
from app.packages.source import templates
from app.packages.zipsafety import safe_member_name

_NS_VERSION = {
    "http://www.adlnet.org/xsd/adlcp_rootv1p2": "1.2",
    "http://www.imsproject.org/xsd/imscp_rootv1p1p2": "1.2",
    "http://www.adlnet.org/xsd/adlcp_v1p3": "2004",
}
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
# Item settings the LMS reads (mastery score, launch data, time limits), in schema order per version.
ITEM_SETTINGS = {
    "1.2": ("maxtimeallowed", "timelimitaction", "datafromlms", "masteryscore"),
    "2004": ("timeLimitAction", "dataFromLMS"),
}


@dataclass
class Sco:
    """One SCO item as the LMS launches it: ``launch`` plus ``query`` (may be empty)."""

    title: str
    launch: str
    query: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def href(self) -> str:
        return self.launch + (f"?{self.query}" if self.query else "")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attr(element: ElementTree.Element, local_name: str) -> str | None:
    for key, value in element.attrib.items():
        if _local(key).lower() == local_name.lower():
            return value
    return None


def _parse(data: bytes) -> tuple[ElementTree.Element, str]:
    # The parser itself refuses a DOCTYPE wherever it stands and in whatever encoding the
    # manifest is written (UTF-16, a declared single-byte code page): a byte search would miss
    # both, and a manifest that passed here is shipped to the LMS byte for byte.
    try:
        root = defused.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise PackageError("imsmanifest.xml declares a DOCTYPE or entities; a SCORM manifest needs neither "
                           "(export it again, or remove the <!DOCTYPE ...> declaration)") from None
    except ElementTree.ParseError as exc:
        raise PackageError(f"imsmanifest.xml is not well-formed XML ({exc})") from None
    if _local(root.tag) != "manifest":
        raise PackageError("imsmanifest.xml has no <manifest> root element")

    version = None
    for element in root.iter():
        if _local(element.tag) == "schemaversion" and element.text:
            text = element.text.strip()
            if text == "1.2":
                version = "1.2"
            elif "2004" in text or "1.3" in text:
                version = "2004"
            break
    if version is None:
        namespaces = {element.tag.split("}")[0][1:] for element in root.iter() if element.tag.startswith("{")}
        namespaces |= {key.split("}")[0][1:] for element in root.iter() for key in element.attrib
                       if key.startswith("{")}
        found = {_NS_VERSION[ns] for ns in namespaces if ns in _NS_VERSION}
        if len(found) == 1:
            version = found.pop()
    if version is None:
        raise PackageError("cannot tell the SCORM version of imsmanifest.xml (no schemaversion)")
    return root, version


def _sco_resources(root: ElementTree.Element) -> dict[str, tuple[str, str]]:
    """SCO resources by identifier: (launch file, query string of the href)."""
    found: dict[str, tuple[str, str]] = {}
    for resources in root.iter():
        if _local(resources.tag) != "resources":
            continue
        outer = resources.get(_XML_BASE, "")
        for resource in resources:
            if _local(resource.tag) != "resource" or (_attr(resource, "scormtype") or "").lower() != "sco":
                continue
            href = resource.get("href")
            if not href:
                continue
            parts = urlsplit(outer + resource.get(_XML_BASE, "") + href)
            name = safe_member_name(posixpath.normpath(unquote(parts.path)))
            found[resource.get("identifier", "")] = (name, parts.query)
    return found


def _no_sco(root) -> None:
    """Refuse a manifest without a SCO; one of assets only is told why and what to do."""
    if any(_local(r.tag) == "resource" and r.get("href") and (_attr(r, "scormtype") or "").lower() == "asset"
           for r in root.iter()):
        raise PackageError(
            "imsmanifest.xml lists only assets (adlcp:scormtype=\"asset\"): an LMS gives an asset no SCORM "
            "API, so the tracker could never read the learner and no launch would be counted. Export the "
            "course again as SCORM with at least one SCO, or leave imsmanifest.xml out and give the content "
            "with index.html at its root (the package is then one SCO that launches index.html)")
    raise PackageError("imsmanifest.xml lists no SCO with a launch file (adlcp:scormtype=\"sco\" and href)")


def read_manifest(data: bytes) -> tuple[str, list[str]]:
    """(SCORM version, launch files of its SCOs) of an authoring tool's manifest."""
    root, version = _parse(data)
    launches: list[str] = []
    for name, _query in _sco_resources(root).values():
        if name not in launches:
            launches.append(name)
    if not launches:
        _no_sco(root)
    return version, launches


def _join_query(query: str, parameters: str) -> str:
    """The SCORM CAM rule for an item's ``adlcp:parameters`` added to its resource's href."""
    parameters = parameters.strip().split("#", 1)[0]
    if parameters.startswith(("?", "&")):
        parameters = parameters[1:]
    return "&".join(part for part in (query, parameters) if part)


def read_scos(data: bytes) -> tuple[str, list[Sco], list[str]]:
    """(version, SCO items of the default organisation in order, notes on what a remote package drops)."""
    root, version = _parse(data)
    resources = _sco_resources(root)
    organisations = [e for e in root.iter() if _local(e.tag) == "organizations"]
    organisation = None
    notes: list[str] = []
    if organisations:
        default = organisations[0].get("default")
        candidates = [e for e in organisations[0] if _local(e.tag) == "organization"]
        organisation = next((e for e in candidates if e.get("identifier") == default), None) or \
            (candidates[0] if candidates else None)
    scos: list[Sco] = []
    if organisation is not None:
        for item in organisation.iter():
            if _local(item.tag) != "item":
                continue
            ref = item.get("identifierref")
            if not ref:
                continue
            if ref not in resources:
                notes.append(f"item {item.get('identifier')!r} launches an asset, not a SCO; a remote package "
                             "leaves it out")
                continue
            launch, query = resources[ref]
            title = next((c.text or "" for c in item if _local(c.tag) == "title"), "").strip()
            settings = {}
            for child in item:
                name = _local(child.tag)
                wanted = [s for s in ITEM_SETTINGS[version] if s.lower() == name.lower()]
                if wanted and (child.text or "").strip():
                    settings[wanted[0]] = child.text.strip()
            scos.append(Sco(title=title or launch, launch=launch,
                            query=_join_query(query, _attr(item, "parameters") or ""), settings=settings))
    if any(_local(e.tag) == "sequencing" for e in root.iter()):
        notes.append("the manifest's sequencing rules (imsss:sequencing) are not carried into the remote package; "
                     "the LMS lets the learner open its items in any order")
    if not scos:
        # No organisation names a SCO: fall back to the SCO resources themselves.
        scos = [Sco(title=name, launch=name, query=query) for name, query in resources.values()]
    if not scos:
        _no_sco(root)
    return version, scos, notes


def ids(package_id: uuid.UUID) -> dict[str, str]:
    tail = package_id.hex
    return {"manifest": f"MANIFEST-{tail}", "organization": f"ORG-{tail}", "item": f"ITEM-{tail}",
            "resource": f"RES-{tail}"}


def render_manifest(scorm_version: str, title: str, package_id: uuid.UUID, launch: str, files: list[str]) -> bytes:
    template = templates.get_template(f"imsmanifest_{scorm_version}.xml")
    return template.render(ids=ids(package_id), title=title, launch=launch, files=files).encode("utf-8")
