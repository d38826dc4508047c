"""mkdocs hooks: one page per registered study, generated from the study module itself, the
figures from figures/ published with the site, and study figures placed in any page by a line
`<!-- figure: STUDY/NAME -->` (the figure with its caption from the study's `CAPTIONS`). Pages
cannot go stale: they are built from `studies.STUDIES`, each study's docstring, `Config`,
`CONFIG`, `QUICK` and `CAPTIONS`; a marker naming a missing figure fails the build."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


def _studies():
    import studies

    return [(name, studies.load(name)) for name in studies.STUDIES]


def on_config(config):
    nav = config["nav"]
    for section in nav:
        if isinstance(section, dict) and "Studies" in section:
            section["Studies"] = [{"Overview": "studies/index.md"}] + [
                {name: f"studies/{name}.md"} for name, _ in _studies()
            ]
    return config


def _config_table(module) -> str:
    rows = ["| field | full run | `--quick` |", "|---|---|---|"]
    for field in dataclasses.fields(module.CONFIG):
        full = getattr(module.CONFIG, field.name)
        quick = getattr(module.QUICK, field.name)
        rows.append(f"| `{field.name}` | `{full!r}` | `{quick!r}` |")
    return "\n".join(rows)


def _tables(name: str) -> str:
    prov = ROOT / "results" / name / "provenance.json"
    if not prov.exists():
        return f"Run `python -m studies run {name}` to produce the tables under `results/{name}/`."
    import pandas as pd

    tables = json.loads(prov.read_text()).get("tables", [])
    lines = [f"Stored under `results/{name}/` as parquet, with `provenance.json`:", ""]
    for table in tables:
        path = ROOT / "results" / name / f"{table}.parquet"
        cols = ", ".join(f"`{c}`" for c in pd.read_parquet(path).columns) if path.exists() else ""
        lines.append(f"- **{table}**: {cols}")
    return "\n".join(lines)


def _page(name: str, module) -> str:
    doc = (module.__doc__ or "").strip()
    title, _, body = doc.partition("\n")
    figures = []
    for fig, caption in getattr(module, "CAPTIONS", {}).items():
        png = ROOT / "figures" / name / f"{fig}.png"
        image = f"![{fig}](../figures/{name}/{fig}.png)\n\n" if png.exists() else ""
        figures.append(f"### {fig}\n\n{image}{caption}\n")
    return "\n".join(
        [
            f"# {name}",
            "",
            f"**{title}**",
            "",
            body.strip(),
            "",
            "## Run it",
            "",
            f"```bash\npython -m studies run {name}          # full configuration\n"
            f"python -m studies run {name} --quick  # the small QUICK configuration\n```",
            "",
            "## Figures",
            "",
            "\n".join(figures) or "(this study draws no figures)",
            "",
            "## Configuration",
            "",
            f"`studies/{name}.py` starts with a frozen `Config`; change a field there, or call "
            f"`studies.{name}.run(dataclasses.replace(studies.{name}.CONFIG, ...))` from Python.",
            "",
            _config_table(module),
            "",
            "## Tables",
            "",
            _tables(name),
            "",
        ]
    )


def on_files(files, config):
    for name, module in _studies():
        files.append(File.generated(config, f"studies/{name}.md", content=_page(name, module)))
    for png in sorted((ROOT / "figures").glob("*/*.png")):
        uri = f"figures/{png.parent.name}/{png.name}"
        files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files


_FIGURE = re.compile(r"^<!-- figure: (\w+)/(\w+) -->$", re.M)


def on_page_markdown(markdown, page, config, files):
    up = "../" * page.file.src_uri.count("/")

    def figure(match):
        import studies

        name, fig = match.groups()
        caption = studies.load(name).CAPTIONS.get(fig)
        if caption is None or not (ROOT / "figures" / name / f"{fig}.png").exists():
            raise ValueError(f"{page.file.src_uri}: no figure {name}/{fig} (run make figures)")
        return (
            f"![{fig}]({up}figures/{name}/{fig}.png)\n\n"
            f"**Figure.** {caption} ([the {name} study]({up}studies/{name}.md))"
        )

    return _FIGURE.sub(figure, markdown)
