"""Option parsers and shared options of the ``medbench`` commands."""

from __future__ import annotations

import click


def parse_labels(text: str | None) -> tuple[int, ...] | None:
    """``"1,2,5"`` -> ``(1, 2, 5)``; None stays None (all labels present)."""
    if not text:
        return None
    try:
        labels = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated integers such as 1,2,5",
                                 param_hint="--labels") from None
    from medbench_fast.metrics.regions import check_label

    try:
        return tuple(check_label(label, "--labels") for label in labels)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--labels: "), param_hint="--labels") from None


def parse_label_names(text: str | None) -> dict[int, str] | None:
    """``"1=liver,2=spleen"`` -> ``{1: "liver", 2: "spleen"}``."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        key, sep, name = item.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise click.BadParameter(f"{item!r}: expected LABEL=NAME pairs such as 1=liver,2=spleen",
                                     param_hint="--label-names")
        if int(key) in out:
            raise click.BadParameter(f"label {int(key)} is named twice ({out[int(key)]!r} and {name.strip()!r}); "
                                     f"name each label once", param_hint="--label-names")
        out[int(key)] = name.strip()
    return out


cache_dir_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False), envvar="MEDBENCH_CACHE_DIR", show_envvar=True,
    help="Volume cache folder (default: ~/.cache/medbench-fast/volumes).",
)
no_cache_option = click.option("--no-cache", is_flag=True, help="Decode every file each time; store nothing.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar; only the final lines.")


def make_cache(cache_dir: str | None, no_cache: bool):
    """The :class:`VolumeCache` the options ask for, or None."""
    if no_cache:
        return None
    from medbench_fast.data.cache import VolumeCache

    return VolumeCache(cache_dir)
