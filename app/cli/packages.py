"""``flask --app wsgi package ...``: build, republish and seal SCORM, cmi5 and Tin Can packages."""

from __future__ import annotations

import secrets
from pathlib import Path

import click
from flask import current_app

from app import packages as package_service
from app.cli.common import CLI_ACTOR, emit, find_client
from app.extensions import db
from app.identity.student_ids import InvalidIdentity

package_group = click.Group("package", help="Build SCORM packages for clients.")


@package_group.command("build")
@click.option("--client", "client_slug", required=True, help="The client's slug.")
@click.option("--course", "course_title", required=True, help="The course title, as billing will show it.")
@click.option("--scorm", "scorm_version", type=click.Choice(package_service.SCORM_VERSIONS), default=None,
              help="SCORM content and the placeholder: 1.2 or 2004. Leave out for a cmi5 or Tin Can export.")
@click.option("--content", type=click.Path(exists=True), default=None,
              help="A folder or zip with index.html, an authoring tool's SCORM, cmi5 (cmi5.xml) or Tin Can "
                   "(tincan.xml) zip; none: a placeholder.")
@click.option("--mode", type=click.Choice(package_service.MODES), default="deployed", show_default=True)
@click.option("--server-url", default=None, help="Where learners' browsers reach this server (default PUBLIC_URL).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True),
              help="The zip file to write.")
@click.option("--json", "as_json", is_flag=True)
def package_build(client_slug, course_title, scorm_version, content, mode, server_url, output, as_json):
    """Build a SCORM, cmi5 or Tin Can package (a new beacon key is written into it) and record its issue."""
    client = find_client(client_slug)
    target = Path(output)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        built = package_service.build_package(
            db.session, client=client, course_title=course_title, scorm_version=scorm_version, out=partial,
            content=content, mode=mode, server_url=server_url or current_app.config["PUBLIC_URL"],
            issued_by=CLI_ACTOR,
        )
        partial.replace(target)
    except package_service.PackageError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {target}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    data = {"package_id": str(built.issue.package_id), "client": client.slug, "course": built.issue.course_title,
            "scorm_version": built.scorm_version, "mode": built.mode, "file": str(target),
            "bytes": target.stat().st_size, "launch_files": built.launch_files, "key_prefix": built.key_prefix,
            "server_url": built.server_url}
    if built.mode == "remote":
        data |= {"content_url": built.content_url, "warnings": built.warnings}
    for warning in built.warnings:
        click.echo(f"Warning: {warning}", err=True)
    what = "untracked (perpetual licence)" if built.mode == "untracked" else f"reporting to {built.server_url}"
    emit(as_json, data, f"Wrote {target} ({package_service.format_name(built.scorm_version)}, {what}), "
                        f"package {data['package_id']}.")


@package_group.command("republish")
@click.option("--package", "package_id", type=click.UUID, required=True, help="The remote package's ID.")
@click.option("--content", type=click.Path(exists=True), required=True,
              help="The new course: a folder or zip with index.html, or an authoring tool's SCORM zip.")
@click.option("--json", "as_json", is_flag=True)
def package_republish(package_id, content, as_json):
    """Replace a remote package's course on this server; every LMS shows it at the next launch."""
    try:
        remote = package_service.republish(db.session, package_id=package_id, content=content, actor=CLI_ACTOR)
    except package_service.PackageError as exc:
        raise click.ClickException(str(exc)) from None
    data = {"package_id": str(package_id), "launch_file": remote.launch_file, "bytes": remote.content_bytes,
            "version": remote.content_version, "warnings": remote.warnings}
    for warning in remote.warnings:
        click.echo(f"Warning: {warning}", err=True)
    emit(as_json, data, f"Republished package {package_id} ({data['bytes']} bytes, opens {remote.launch_file}).")


@package_group.command("seal")
@click.option("--key-file", type=click.File("r"), required=True,
              help="The client's sealing key (base64url, 32 random bytes); see also --new-key.")
@click.option("--in", "source", type=click.Path(exists=True, dir_okay=False), required=True,
              help="A package built for a sealed client.")
@click.option("--out", "output", type=click.Path(dir_okay=False, writable=True), required=True)
@click.option("--json", "as_json", is_flag=True)
def package_seal(key_file, source, output, as_json):
    """Seal a package with the client's own key, offline (the same as the sealing page; no database)."""
    from app.packages import sealing

    try:
        key = sealing.read_client_key(key_file.read())
        with open(source, "rb") as unsealed, open(output, "wb") as out:
            done = sealing.seal_zip(unsealed, out, key)
    except package_service.PackageError as exc:
        Path(output).unlink(missing_ok=True)
        raise click.ClickException(str(exc)) from None
    emit(as_json, {"out": output, **done}, f"Wrote {output}, sealed with key {done['kid']}.")


@package_group.command("seal-key")
@click.option("-o", "output", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Where to write the new key (kept by the client; never give it to the vendor).")
def package_seal_key(output):
    """Make a new sealing key for a client (32 random bytes, base64url)."""
    import base64
    import os

    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    click.echo(f"Wrote a new sealing key to {output}.")


@package_group.command("sealed-id")
@click.option("--key-file", type=click.File("r"), required=True, help="The client's sealing key.")
@click.option("--student-id", required=True, help="As the LMS sends it; normalised as the tracker does.")
def package_sealed_id(key_file, student_id):
    """A learner's sealed ID (what `learner erase --student-id` takes for a sealed client)."""
    from app.packages import sealing

    try:
        click.echo(sealing.sealed_student_id(sealing.read_client_key(key_file.read()), student_id))
    except (package_service.PackageError, InvalidIdentity) as exc:
        raise click.ClickException(str(exc)) from None
