"""Building SCORM packages: what the CLI and the admin download share.

A package is a zip an LMS imports. What goes into it lives in ``scorm_package/``
(manifest templates, the tracker, the placeholder course, the remote launcher).
Content comes in these shapes: none (the placeholder course); a folder or zip
with ``index.html`` at its root (wrapped in our own manifest); an authoring
tool's export with ``imsmanifest.xml`` at its root (its manifest is kept and
every SCO launch page gets the tracker); or a cmi5 (``cmi5.xml``) or Tin Can
(``tincan.xml``) export, kept as it is but for the tracker in each AU's page.

One module per idea:

- ``zipsafety``: reading content from a folder or zip without leaving it;
- ``manifest``: reading an authoring tool's manifest, writing ours;
- ``xapi_manifest``: reading cmi5 and Tin Can course structures;
- ``tracker``: the tracker configured and added to launch pages;
- ``deployed``: the deployed (and untracked) zip;
- ``remote``: the thin zip (a remote cmi5 package: its own cmi5.xml, AU urls on the content
  origin), publishing to the content store;
- ``remote_scan``: what in a course will not work as a remote package (build warnings);
- ``build``: the use cases (build, republish) that the CLI and admin call.
"""

from app.packages.build import (
    MODES,
    SCORM_VERSIONS,
    STANDARDS,
    BuiltPackage,
    build_package,
    check_server_url,
    package_bytes,
    package_file,
    remote_content,
    republish,
)
from app.packages.errors import PackageError, StorageError
from app.packages.manifest import Sco, read_manifest, read_scos, render_manifest
from app.packages.remote import (
    PLAYER_FILE,
    PLAYER_LAYOUT,
    REMOTE_API_FILE,
    REMOTE_LAUNCHER_FILES,
    RESERVED_FILES,
    au_pages,
    check_content_url,
    launch_url,
    origin_of,
    player_page,
    player_url,
    remote_api_source,
    version_url,
)
from app.packages.source import PACKAGE_SOURCE
from app.packages.tracker import (
    BEACON_PATH,
    CONFIG_MARK,
    TRACKER_FILE,
    configured_tracker,
    inject_tracker,
    talks_scorm,
    tracker_source,
)
from app.packages.xapi_manifest import LaunchUnit, format_name, read_cmi5, read_tincan
from app.packages.zipsafety import JUNK, MAX_CONTENT_BYTES, MAX_FILES, Content, safe_member_name

__all__ = [
    "BEACON_PATH", "CONFIG_MARK", "JUNK", "MAX_CONTENT_BYTES", "MAX_FILES", "MODES", "PACKAGE_SOURCE",
    "PLAYER_FILE", "PLAYER_LAYOUT", "au_pages", "player_page", "player_url", "talks_scorm",
    "REMOTE_API_FILE", "REMOTE_LAUNCHER_FILES", "RESERVED_FILES", "SCORM_VERSIONS", "TRACKER_FILE", "BuiltPackage",
    "Content", "PackageError", "StorageError", "Sco", "build_package", "check_content_url", "check_server_url",
    "configured_tracker", "inject_tracker", "launch_url", "origin_of", "package_bytes", "package_file", "read_manifest",
    "read_scos", "remote_api_source", "remote_content", "render_manifest", "republish", "safe_member_name",
    "tracker_source", "version_url", "STANDARDS", "LaunchUnit", "format_name", "read_cmi5", "read_tincan",
]
