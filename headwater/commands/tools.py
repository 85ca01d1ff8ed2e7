"""`headwater tools list|build|show`: the registry of containerised scientific tools."""

from __future__ import annotations

import json

import typer

from headwater.errors import ConfigError, InputError
from headwater.settings import get_settings

app = typer.Typer(help="Containerised scientific tools (specs under tools/).", no_args_is_help=True)


@app.command("list")
def list_tools(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered tools with their image and whether it is built."""
    from tasks.containers import docker_client
    from tasks.tool_registry import load_registry

    tools = load_registry()
    built: set[str] = set()
    try:
        client = docker_client(get_settings(), timeout=10)
        built = {tag for image in client.images.list() for tag in image.tags}
        client.close()
    except Exception:
        pass
    rows = [
        {
            "name": t.name,
            "version": t.version,
            "image": t.image,
            "built": t.image in built,
            "description": t.description,
        }
        for t in tools.values()
    ]
    if as_json:
        typer.echo(json.dumps({"tools": rows}))
        return
    for r in rows:
        mark = "built" if r["built"] else "not built"
        typer.echo(
            f"{r['name']:<20} v{r['version']:<4} {r['image']:<36} {mark:<10} {r['description']}"
        )


@app.command("show")
def show_tool(name: str = typer.Argument(..., help="Tool name.")) -> None:
    """Print a tool's spec (command template, parameter schema, limits) as JSON."""
    from tasks.tool_registry import get_tool

    typer.echo(json.dumps(get_tool(name).model_dump(), indent=2))


@app.command("build")
def build_tools(
    name: str | None = typer.Argument(None, help="Tool or tools/ folder; default: all."),
    as_json: bool = typer.Option(False, "--json", help="Print the built images as JSON."),
) -> None:
    """Build tool images locally from tools/<folder>/Dockerfile on the base image (no registry)."""
    from headwater.services import ensure_base_image
    from tasks.containers import docker_client
    from tasks.tool_registry import TOOLS_DIR, build_dir, load_registry

    settings = get_settings()
    tools = load_registry()
    if name is None:
        chosen = list(tools.values())
    elif name in tools:
        chosen = [tools[name]]
    else:
        chosen = [t for t in tools.values() if t.build == name]
        if not chosen:
            raise InputError(f"unknown tool or tools/ folder {name!r}; see `headwater tools list`")
    try:
        base = ensure_base_image(settings)
    except Exception as exc:
        raise ConfigError("HEADWATER_BASE_IMAGE", f"base image unavailable: {exc}") from None
    client = docker_client(settings, timeout=3600)
    built: dict[str, str] = {}
    try:
        for spec in chosen:
            folder = build_dir(spec)
            if spec.image in built or folder is None:
                if folder is None and spec.image != base:
                    raise ConfigError(
                        "tools", f"{spec.name}: no Dockerfile for {spec.image} under {TOOLS_DIR}"
                    )
                built.setdefault(spec.image, "base image")
                continue
            typer.echo(f"building {spec.image} from {folder}", err=True)
            image, logs = client.images.build(
                path=str(folder),
                tag=spec.image,
                network_mode="host",
                rm=True,
                buildargs={"BASE_IMAGE": base},
                pull=False,
            )
            for entry in logs:
                if "stream" in entry and entry["stream"].strip():
                    typer.echo(entry["stream"].rstrip(), err=True)
            built[spec.image] = image.id
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps({"images": built}))
    else:
        for image, ident in built.items():
            typer.echo(f"{image} {ident}")
