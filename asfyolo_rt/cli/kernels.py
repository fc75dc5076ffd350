"""`asfyolo-rt kernels ...`: the Triton kernels (ahead-of-time compilation for deployment)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from asfyolo_rt.cli.main import sub_app

grp = sub_app("kernels", "Triton kernels (CPAM, mask assembly): ahead-of-time compilation to PTX/cubin.")
console = Console()


@grp.command("compile")
def compile_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (PTX, cubin, manifest.json).")],
    arch: Annotated[
        str, typer.Option("--arch", help="Comma-separated GPU architectures: sm_75, sm_80, sm_86, sm_87 (Orin), "
                          "sm_89, sm_90 (-> sm_90a), sm_120.")
    ] = "sm_87,sm_89,sm_90",
    kernel: Annotated[
        list[str] | None,
        typer.Option("--kernel", "-k", help="Variant name or prefix to compile (repeatable): cpam, cpam_stats_fp16, "
                     "mask, mask_label_fp32, ... Default: all production variants."),
    ] = None,
    mask_threshold: Annotated[
        float, typer.Option("--mask-threshold", help="Mask probability threshold baked into the mask kernels.")
    ] = 0.5,
    ptx_version: Annotated[
        str | None, typer.Option("--ptx-version", help="PTX ISA to declare, e.g. 8.5 for JetPack 6 drivers. "
                                 "Default: the pinned Triton's (8.8).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest entries as JSON to stdout.")] = False,
) -> None:
    """Compile the production Triton kernels to PTX and cubin without a GPU, and write manifest.json.

    Variants whose shared memory exceeds an architecture's limit are refused (exit code 1).

    Examples:
      asfyolo-rt kernels compile --arch sm_87,sm_89,sm_90 --out build/kernels
      asfyolo-rt kernels compile --arch sm_87 --kernel mask_label --ptx-version 8.5 --out build/orin --json
    """
    from asfyolo_rt.cli._common import print_json, progress_bar
    from asfyolo_rt.errors import KernelUnavailableError
    from asfyolo_rt.kernels.aot import compile_kernels, parse_arch

    archs = [a for a in arch.split(",") if a.strip()]
    for a in archs:
        parse_arch(a)  # fail before the progress bar starts
    with progress_bar("compiling kernels") as progress:
        result = compile_kernels(
            archs, out, variants=kernel or None, mask_threshold=mask_threshold, ptx_version=ptx_version,
            progress=progress,
        )
    if as_json:
        print_json({"manifest": str(result.manifest), "kernels": result.compiled, "refused": result.refused})
    else:
        table = Table(title=f"{len(result.compiled)} kernels -> {result.manifest}")
        for col in ("arch", "variant", "target", "PTX", "shared B", "registers", "spill B"):
            table.add_column(col)
        for e in result.compiled:
            table.add_row(e["arch"], e["variant"], str(e["target"]), str(e["ptx_version"]), str(e["shared"]),
                          str(e.get("registers", "?")), str(e.get("spill_bytes", "?")))
        for e in result.refused:
            table.add_row(e["arch"], e["variant"], "[red]refused[/]", "", str(e["shared"]), "", "")
        console.print(table)
    if result.refused:
        names = ", ".join(f"{e['variant']}@{e['arch']}" for e in result.refused)
        raise KernelUnavailableError(
            f"{len(result.refused)} variant(s) exceed the shared-memory limit and were not written: {names}",
            hint=f"see 'refused' in {result.manifest}; use smaller block sizes for these architectures",
        )
