"""``report.html``: one self-contained page (styles and figures inside) from the documents the other outputs use.

It renders ``metrics.json``'s document, the audit's ``audit.json`` document and, after ``--exclude``, what was
left out and how the figures moved. Figures are the PNG files of the output folder, embedded as data URIs, so the
page can be mailed and opened without network access; so are the Noto Sans CJK glyphs its text uses. Every value
that comes from the user (file, folder, group, identity and model names, the command line) is HTML-escaped.
English and Japanese share one template.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from faceval.atomic import atomic_write

LANGUAGES = ("en", "ja")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "faceval report",
        "run": "What was run",
        "created": "Created",
        "command": "Command",
        "data": "Data",
        "images_identities": "{images} images of {identities} identities ({layout}); {scored} images scored",
        "scores_text": "{scores} scores ({layout})",
        "models": "Models",
        "model": "Model",
        "file": "File",
        "versions": "Versions",
        "headline": "Headline figures",
        "images": "Images",
        "failed": "Failed",
        "genuine": "Genuine pairs",
        "impostor": "Impostor pairs",
        "tar": "TAR at FMR 1e-3",
        "best_f1": "Best-F1 threshold",
        "threshold": "The threshold to use",
        "threshold_text": "{model}: accept when {accept} with threshold {threshold} ({units}). Over all {impostor} "
        "impostor pairs this gives FMR {fmr} (target {target}); it costs FNMR {fnmr}: that share of genuine pairs "
        "is rejected.",
        "no_threshold": "{model}: no threshold reaches the target FMR {target} on these pairs.",
        "comparisons": "Model comparisons",
        "difference": "AUC difference",
        "interval": "95 % interval",
        "groups": "Groups",
        "group": "Group",
        "identities": "Identities",
        "fnmr_global": "FNMR at the global threshold",
        "fmr_global": "FMR at the global threshold",
        "figures": "Figures",
        "failures": "Failures",
        "reason": "Reason",
        "count": "Images",
        "no_failures": "Every image was embedded.",
        "failures_total": "{model}: {failed} images without a vector.",
        "audit": "Dataset audit",
        "audit_intro": "Checked with {model} on {embedded} of {images} images; {flagged} images flagged. "
        "Details: audit.json, audit.csv.",
        "no_audit": "No audit was run (faceval metrics, or --no-audit).",
        "duplicates": "Duplicates",
        "kind": "Kind",
        "paths": "Files",
        "scope": "Identities",
        "across": "across identities",
        "within": "within one identity",
        "same_person": "Probably the same person under two names",
        "closeness": "Closeness",
        "cross_mean": "Mean cross similarity",
        "within_means": "Mean within each",
        "suspect_labels": "Probably mislabelled images",
        "path": "File",
        "identity": "Label",
        "closest": "Closest identity",
        "margin": "Margin",
        "multi_face": "Images with several faces (the largest was used)",
        "faces": "Faces",
        "box": "Box used",
        "none_found": "None found.",
        "excluded": "Excluded images",
        "excluded_text": "{count} images were left out ({source}). Figures before and after:",
        "before": "Before",
        "after": "After",
        "notes": "Notes",
        "rule_of_three_pairs": "* Too few impostor pairs to measure FMR 1e-3 (rule of three: 3,000 are needed).",
        "exact": "exact",
        "near": "near",
    },
    "ja": {
        "title": "faceval レポート",
        "run": "実行内容",
        "created": "作成日時",
        "command": "コマンド",
        "data": "データ",
        "images_identities": "{identities} 人の画像 {images} 枚（{layout}）、評価に使った画像 {scored} 枚",
        "scores_text": "スコア {scores} 件（{layout}）",
        "models": "モデル",
        "model": "モデル",
        "file": "ファイル",
        "versions": "バージョン",
        "headline": "主要な指標",
        "images": "画像数",
        "failed": "失敗",
        "genuine": "本人ペア",
        "impostor": "他人ペア",
        "tar": "FMR 1e-3 での TAR",
        "best_f1": "F1 最大の閾値",
        "threshold": "使うべき閾値",
        "threshold_text": "{model}：閾値 {threshold}（{units}）で {accept} のとき受け入れ。"
        "他人ペア全 {impostor} 組での FMR は {fmr}（目標 {target}）、"
        "その代償として FNMR は {fnmr}（本人ペアのこの割合が拒否されます）。",
        "no_threshold": "{model}：このペアでは目標 FMR {target} に届く閾値がありません。",
        "comparisons": "モデルの比較",
        "difference": "AUC の差",
        "interval": "95 % 区間",
        "groups": "グループ",
        "group": "グループ",
        "identities": "人数",
        "fnmr_global": "共通閾値での FNMR",
        "fmr_global": "共通閾値での FMR",
        "figures": "図",
        "failures": "失敗",
        "reason": "理由",
        "count": "画像数",
        "no_failures": "すべての画像で特徴量を得ました。",
        "failures_total": "{model}：特徴量を得られなかった画像 {failed} 枚。",
        "audit": "データセットの監査",
        "audit_intro": "{model} で {images} 枚中 {embedded} 枚を確認し、{flagged} 枚に問題の可能性があります。"
        "詳細は audit.json と audit.csv。",
        "no_audit": "監査は実行されていません（faceval metrics、または --no-audit）。",
        "duplicates": "重複画像",
        "kind": "種類",
        "paths": "ファイル",
        "scope": "人物",
        "across": "別人のラベル間",
        "within": "同じ人物内",
        "same_person": "別名の同一人物の可能性",
        "closeness": "近さ",
        "cross_mean": "相互の平均類似度",
        "within_means": "それぞれの内部平均",
        "suspect_labels": "ラベル誤りの可能性がある画像",
        "path": "ファイル",
        "identity": "ラベル",
        "closest": "最も近い人物",
        "margin": "差",
        "multi_face": "複数の顔が写った画像（最大の顔を使用）",
        "faces": "顔の数",
        "box": "使用した顔の位置",
        "none_found": "見つかりませんでした。",
        "excluded": "除外した画像",
        "excluded_text": "{count} 枚を除外しました（{source}）。除外前後の指標：",
        "before": "除外前",
        "after": "除外後",
        "notes": "注意事項",
        "rule_of_three_pairs": "* FMR 1e-3 を測るには他人ペアが足りません（3 の法則：3,000 組必要）。",
        "exact": "完全一致",
        "near": "ほぼ同一",
    },
}

# The fixed English terms of the documents (units, decision rules), in the other languages; other values as they are.
TERMS: dict[str, dict[str, str]] = {
    "ja": {
        "distance": "距離",
        "cosine similarity": "コサイン類似度",
        "distance between L2-normalised templates": "L2 正規化したテンプレート間の距離",
        "score (higher = more alike)": "スコア（大きいほど似ている）",
        "score (lower = more alike)": "スコア（小さいほど似ている）",
        "distance <= threshold": "距離 <= 閾値",
        "similarity >= threshold": "類似度 >= 閾値",
        "score >= threshold": "スコア >= 閾値",
        "score <= threshold": "スコア <= 閾値",
    },
}

_STYLE = """
:root { font-family: "faceval CJK", system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
        line-height: 1.5; }
body { margin: 0 auto; max-width: 1100px; padding: 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; margin-top: 2rem; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f3f3f3; }
.ci { color: #555; font-size: 0.8rem; }
code, .path { font-family: "faceval CJK", ui-monospace, Menlo, Consolas, monospace; font-size: 0.85rem;
              overflow-wrap: anywhere; }
figure { margin: 0.5rem 0; display: inline-block; max-width: 100%; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.8rem; color: #555; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); gap: 0.5rem; }
@media print { body { max-width: none; } .scroll { overflow: visible; } figure, table { break-inside: avoid; }
               h2 { break-after: avoid; } }
"""


# The embedded font serves only CJK characters (first in every font list, so no character is drawn from a
# fallback before it has loaded); Latin text keeps the reader's system font.
_CJK_RANGES = "U+2E80-9FFF, U+AC00-D7AF, U+F900-FAFF, U+FE30-FE4F, U+FF00-FFEF"


def _embedded_font(text: str) -> str:
    """An ``@font-face`` rule carrying the Noto Sans CJK glyphs of ``text``'s non-ASCII characters (a subset of a
    few hundred kilobytes at most), so Japanese reads the same on machines without a CJK font."""
    characters = sorted({ord(c) for c in text if ord(c) > 0x7F})
    if not characters:
        return ""
    # Imported where used (fontTools and matplotlib's font manager): commands that write no report skip them.
    from fontTools import subset

    from faceval.output.fonts import cjk_font_path

    options = subset.Options()
    options.font_number = 0  # Noto Sans CJK JP in the collection
    options.desubroutinize = True  # Chromium's font sanitizer misdraws some subset CJK glyphs otherwise
    options.hinting = False
    font = subset.load_font(str(cjk_font_path()), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=characters)
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    font.close()
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'@font-face {{ font-family: "faceval CJK"; src: url(data:font/otf;base64,{data}) format("opentype"); '
        f"font-display: block; unicode-range: {_CJK_RANGES}; }}"
    )


def escape(value: Any) -> str:
    """Escaped text of any value: file, folder, group and model names are untrusted."""
    return html.escape("" if value is None else str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def interval_text(value: Any, interval: Sequence[float] | None, digits: int = 3) -> str:
    text = number(value, digits)
    return text if not interval else f"{text} [{number(interval[0], digits)}, {number(interval[1], digits)}]"


def interval_cell(value: Any, interval: Sequence[float] | None, digits: int = 3) -> str:
    """An escaped table cell: the value, and its interval on a second line (narrow columns fit a phone)."""
    text = escape(number(value, digits))
    if not interval:
        return text
    bounds = f"[{number(interval[0], digits)}, {number(interval[1], digits)}]"
    return f'{text}<br><span class="ci">{escape(bounds)}</span>'


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = ()) -> str:
    """A table from already escaped cells; ``numeric`` columns are right-aligned."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell}</td>' if index < len(numeric) and numeric[index] else f"<td>{cell}</td>"
            for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def figure(folder: Path, relative: str) -> str:
    """An ``<img>`` with the PNG inside it as a data URI; nothing when the file is not there."""
    path = folder / relative
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(relative)}" loading="eager">'
        f"<figcaption>{escape(relative)}</figcaption></figure>"
    )


def _model_files(description: Any) -> list[tuple[str, str]]:
    """Every (file, sha256) named anywhere in a model's description."""
    found = []
    if isinstance(description, Mapping):
        if description.get("sha256"):
            name = description.get("path") or description.get("file") or description.get("model") or ""
            found.append((str(name), str(description["sha256"])))
        for value in description.values():
            if isinstance(value, Mapping | list):
                found.extend(_model_files(value))
    elif isinstance(description, list):
        for value in description:
            found.extend(_model_files(value))
    return list(dict.fromkeys(found))


class Page:
    """What every report page shares: its language, the sentences, what was run, figure grids and the notes.
    ``text`` adds a page's own sentences to the shared ones (`TEXT`), per language."""

    def __init__(
        self, folder: Path, document: Mapping[str, Any], lang: str, text: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"--lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
        self.folder, self.document, self.lang = folder, document, lang
        self.t = {**TEXT[lang], **(text or {}).get(lang, {})}

    def say(self, key: str, **values: Any) -> str:
        """A translated sentence with escaped values filled in."""
        return escape(self.t[key]).format(**{name: escape(value) for name, value in values.items()})

    def term(self, value: str) -> str:
        """A document's unit or decision rule in the page's language (plain text: `say` escapes it)."""
        return TERMS.get(self.lang, {}).get(value, value)

    def figure_grid(self, names: Iterable[str]) -> str:
        """The output folder's PNGs ``names`` (those that exist) side by side, narrowing to one column on a phone."""
        figures = "".join(figure(self.folder, name) for name in names)
        return f'<div class="grid">{figures}</div>' if figures else ""

    def run(self, data: str | None = None) -> str:
        """Date, command, data, models with their files' sha256, versions; ``data`` (escaped HTML) replaces the
        sentence on the images and identities."""
        document, dataset = self.document, self.document["dataset"]
        command = " ".join(document.get("command") or [])
        models = [
            (
                escape(name),
                "<br>".join(f'<span class="path">{escape(f)}</span> <code>{escape(sha)}</code>' for f, sha in files),
            )
            for name, model in document["models"].items()
            for files in [_model_files(model.get("model"))]
        ]
        environment = document.get("environment", {})
        versions = {"faceval": environment.get("faceval"), "python": environment.get("python")}
        versions |= {name: version for name, version in environment.get("packages", {}).items() if version}
        return (
            f"<h2>{self.say('run')}</h2><p>{self.say('created')}: {escape(document.get('created'))}<br>"
            f"{self.say('command')}: <code>{escape(command)}</code><br>{self.say('data')}: "
            f'<span class="path">{escape(dataset.get("root"))}</span>, '
            + (
                data
                or self.say(
                    "images_identities",
                    images=dataset.get("n_images"),
                    identities=dataset.get("n_identities"),
                    layout=dataset.get("layout"),
                    scored=dataset.get("scored", {}).get("n_images", dataset.get("n_images")),
                )
            )
            + "</p>"
            + table([self.say("model"), self.say("file") + " / sha256"], models)
            + f"<p>{self.say('versions')}: "
            + ", ".join(f"{escape(name)} {escape(version)}" for name, version in versions.items())
            + "</p>"
        )

    def notes(self) -> str:
        notes = self.document.get("notes") or []
        items = "".join(f"<li>{escape(note)}</li>" for note in notes)
        return f"<h2>{self.say('notes')}</h2><ul>{items}</ul>" if notes else ""


class _VerificationPage(Page):
    """The sections of ``metrics.json``'s report."""

    def data(self) -> str | None:
        """A score file's data sentence (it has scores, not images); None for images."""
        dataset = self.document["dataset"]
        if "n_scores" not in dataset:
            return None
        return self.say("scores_text", scores=f"{dataset['n_scores']:,}", layout=dataset.get("layout"))

    def headline(self) -> str:
        header = [self.say(k) for k in ("model", "images", "failed", "genuine", "impostor")]
        header += ["AUC", "EER", self.say("tar"), self.say("best_f1")]
        rows = []
        for name, model in self.document["models"].items():
            overall = model.get("all_pairs", {})
            tar = (model.get("tar_at_far") or {}).get("1e-3") or {}
            rows.append(
                [
                    escape(name),
                    number(model["n_images"]),
                    number(model["n_failed"]),
                    number(model["n_genuine"]),
                    number(model["n_impostor"]),
                    escape(interval_text(model["auc"], overall.get("auc_ci"))),
                    escape(interval_text((model["eer"] or {}).get("value"), overall.get("eer_ci"))),
                    escape(number(tar.get("tar"), 3)),
                    escape(number((model["best_f1"] or {}).get("threshold"))),
                ]
            )
        return f"<h2>{self.say('headline')}</h2>" + table(header, rows, [False] + [True] * 8)

    def threshold(self) -> str:
        parts = []
        for name, model in self.document["models"].items():
            point = model.get("global_threshold")
            if not point:
                continue
            if point.get("threshold") is None:
                parts.append(self.say("no_threshold", model=name, target=point["target_fmr"]))
                continue
            parts.append(
                self.say(
                    "threshold_text",
                    model=name,
                    accept=self.term(model["accept_when"]),
                    threshold=number(point["threshold"]),
                    units=self.term(model["units"]),
                    impostor=f"{point['n_impostor']:,}",
                    fmr=interval_text(point["fmr"], point.get("fmr_ci"), 5),
                    target=f"{point['target_fmr']:g}",
                    fnmr=interval_text(point["fnmr"], point.get("fnmr_ci")),
                )
            )
        return f"<h2>{self.say('threshold')}</h2>" + "".join(f"<p>{part}</p>" for part in parts) if parts else ""

    def comparisons(self) -> str:
        comparisons = self.document.get("comparisons") or []
        if not comparisons:
            return ""
        rows = [
            [
                escape(f"{c['model_a']} − {c['model_b']}"),
                escape(number(c["auc_a"])),
                escape(number(c["auc_b"])),
                escape(number(c["difference"])),
                escape(interval_text(None, c.get("ci")) if c.get("ci") else "–"),
                escape(number(c.get("delong_p"))),
            ]
            for c in comparisons
        ]
        header = [self.say("model"), "AUC a", "AUC b", self.say("difference"), self.say("interval"), "DeLong p"]
        return f"<h2>{self.say('comparisons')}</h2>" + table(header, rows, [False] + [True] * 5)

    def groups(self) -> str:
        parts = []
        for name, model in self.document["models"].items():
            groups = model.get("groups") or {}
            if len(groups) < 2:
                continue
            header = [self.say(k) for k in ("group", "images", "identities", "failed")]
            header += ["AUC", "EER", self.say("fnmr_global"), self.say("fmr_global")]
            rows = [
                [
                    escape(group),
                    number(entry["n_images"]),
                    number(entry["n_identities"]),
                    number(entry["n_failed"]),
                    escape(interval_text(entry["auc"], entry.get("auc_ci"))),
                    escape(interval_text(entry["eer"], entry.get("eer_ci"))),
                    escape(interval_text(entry.get("fnmr_at_global"), entry.get("fnmr_at_global_ci"))),
                    escape(interval_text(entry.get("fmr_at_global"), entry.get("fmr_at_global_ci"), 5)),
                ]
                for group, entry in groups.items()
            ]
            files = model.get("files", {})
            parts.append(f"<h3>{escape(name)}</h3>" + table(header, rows, [False] + [True] * 7))
            parts.append(self.figure_grid(files[k] for k in ("groups_rates", "groups_fmr_heatmap") if k in files))
        return f"<h2>{self.say('groups')}</h2>" + "".join(parts) if parts else ""

    def score_groups(self) -> str:
        """``faceval scores --group-by``: every figure of each group's own lines (no identities, so no intervals)."""
        parts = []
        for name, model in self.document["models"].items():
            groups = model.get("score_groups") or {}
            if not groups:
                continue
            header = [self.say(k) for k in ("group", "genuine", "impostor")]
            header += ["AUC", "EER", self.say("tar"), self.say("best_f1")]
            rows = []
            for group, entry in groups.items():
                tar = (entry.get("tar_at_far") or {}).get("1e-3") or {}
                rows.append(
                    [
                        escape(group),
                        number(entry["n_genuine"]),
                        number(entry["n_impostor"]),
                        escape(number(entry["auc"])),
                        escape(number((entry["eer"] or {}).get("value"))),
                        escape(number(tar.get("tar"), 3) + ("" if tar.get("supported", True) else "*")),
                        escape(number((entry["best_f1"] or {}).get("threshold"))),
                    ]
                )
            parts.append(f"<h3>{escape(name)}</h3>" + table(header, rows, [False] + [True] * 6))
            if any(not ((entry.get("tar_at_far") or {}).get("1e-3") or {}).get("supported", True)
                   for entry in groups.values()):  # fmt: skip
                parts.append(f"<p>{self.say('rule_of_three_pairs')}</p>")
        return f"<h2>{self.say('groups')}</h2>" + "".join(parts) if parts else ""

    def figures(self) -> str:
        names = ["roc.png", "roc_log.png", "det.png"]
        for model in self.document["models"].values():
            files = model.get("files", {})
            names += [files[k] for k in ("threshold_metrics", "score_histogram", "groups_roc", "groups_histograms")
                      if k in files]  # fmt: skip
        grid = self.figure_grid(names)
        return f"<h2>{self.say('figures')}</h2>{grid}" if grid else ""

    def failures(self, audit: Mapping[str, Any] | None) -> str:
        lines = [
            f"<p>{self.say('failures_total', model=name, failed=model['n_failed'])}</p>"
            for name, model in self.document["models"].items()
            if model["n_failed"]
        ]
        if audit and audit.get("failures"):
            rows = [[escape(f["reason"]), number(len(f["paths"]))] for f in audit["failures"]]
            lines.append(table([self.say("reason"), self.say("count")], rows, [False, True]))
        return f"<h2>{self.say('failures')}</h2>" + ("".join(lines) or f"<p>{self.say('no_failures')}</p>")

    def audit(self, audit: Mapping[str, Any] | None) -> str:
        title = f"<h2>{self.say('audit')}</h2>"
        if not audit:
            return title + f"<p>{self.say('no_audit')}</p>"
        parts = [
            f"<p>{self.say('audit_intro', model=audit['model'], embedded=audit['n_embedded'], images=audit['n_images'], flagged=audit['n_flagged_images'])}</p>"  # noqa: E501
        ]

        def section(key: str, header: Sequence[str], rows: list[list[str]], numeric: Sequence[bool] = ()) -> None:
            parts.append(f"<h3>{self.say(key)}</h3>")
            parts.append(table(header, rows, numeric) if rows else f"<p>{self.say('none_found')}</p>")

        section(
            "duplicates",
            [self.say("kind"), self.say("scope"), self.say("paths")],
            [
                [
                    self.say(group["kind"]),
                    self.say("across" if group["cross_identity"] else "within")
                    + "<br>"
                    + ", ".join(escape(identity) for identity in dict.fromkeys(group["identities"])),
                    "<br>".join(f'<span class="path">{escape(path)}</span>' for path in group["paths"]),
                ]
                for group in audit["duplicates"]
            ],
        )
        section(
            "same_person",
            [self.say("identities"), self.say("closeness"), self.say("cross_mean"), self.say("within_means")],
            [
                [
                    " / ".join(escape(name) for name in pair["identities"]),
                    number(pair["closeness"], 3),
                    number(pair["cross_mean"]),
                    ", ".join(number(value) for value in pair["within_means"]),
                ]
                for pair in audit["same_person"]
            ],
            [False, True, True, True],
        )
        section(
            "suspect_labels",
            [self.say("path"), self.say("identity"), self.say("closest"), self.say("margin")],
            [
                [
                    f'<span class="path">{escape(s["path"])}</span>',
                    escape(s["identity"]),
                    escape(s["closest_identity"]),
                    number(s["margin"]),
                ]
                for s in audit["suspect_labels"]
            ],
            [False, False, False, True],
        )
        section(
            "multi_face",
            [self.say("path"), self.say("identity"), self.say("faces"), self.say("box")],
            [
                [
                    f'<span class="path">{escape(f["path"])}</span>',
                    escape(f["identity"]),
                    number(f["faces_found"]),
                    escape(f["box"]),
                ]
                for f in audit["multi_face"]
            ],
            [False, False, True, False],
        )
        return title + "".join(parts)

    def exclusion(self, exclusion: Mapping[str, Any] | None) -> str:
        if not exclusion:
            return ""
        rows = []
        for name, before in exclusion["before"].items():
            after = exclusion["after"].get(name, {})
            for key in ("n_images", "auc", "eer", "tar_at_far_1e-3"):
                rows.append(
                    [escape(name), escape(key), escape(number(before.get(key))), escape(number(after.get(key)))]
                )
        paths = "".join(f'<li class="path">{escape(path)}</li>' for path in exclusion["paths"])
        return (
            f"<h2>{self.say('excluded')}</h2><p>"
            + self.say("excluded_text", count=len(exclusion["paths"]), source=exclusion["source"])
            + "</p>"
            + table([self.say("model"), "", self.say("before"), self.say("after")], rows, [False, False, True, True])
            + f"<details><summary>{self.say('paths')}</summary><ul>{paths}</ul></details>"
        )


def page_html(page: Page, sections: Iterable[str]) -> str:
    """The whole self-contained page: the sections under the page's title, styles, the CJK glyphs the text uses
    and a Content Security Policy that lets nothing but the embedded data in."""
    body = "".join(sections)
    title = page.say("title")
    font = _embedded_font(html.unescape(title + body))
    policy = "default-src 'none'; img-src data:; font-src data:; style-src 'unsafe-inline'"
    return (
        f'<!DOCTYPE html><html lang="{page.lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f"<title>{title}</title><style>{font}{_STYLE}</style></head>"
        f"<body><h1>{title}</h1>{body}</body></html>\n"
    )


def write_page(folder: str | Path, text: str | None) -> Path:
    """Write ``report.html`` into the output folder (atomically); ``text`` None removes an earlier run's page,
    which would show figures this run did not compute. Returns its path."""
    path = Path(folder) / "report.html"
    if text is None:
        path.unlink(missing_ok=True)
        return path
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def render_html_report(
    folder: str | Path,
    document: Mapping[str, Any],
    audit: Mapping[str, Any] | None = None,
    exclusion: Mapping[str, Any] | None = None,
    lang: str = "en",
) -> str:
    """The verification page (``metrics.json``'s document) as a string; figures are read from ``folder``."""
    page = _VerificationPage(Path(folder), document, lang)
    return page_html(
        page,
        (
            page.run(page.data()),
            page.headline(),
            page.threshold(),
            page.comparisons(),
            page.groups(),
            page.score_groups(),
            page.exclusion(exclusion),
            page.audit(audit),
            page.failures(audit),
            page.figures(),
            page.notes(),
        ),
    )


def write_html_report(
    folder: str | Path,
    document: Mapping[str, Any],
    audit: Mapping[str, Any] | None = None,
    exclusion: Mapping[str, Any] | None = None,
    lang: str = "en",
) -> Path:
    """Write the verification ``report.html`` into the output folder ``folder`` (atomically) and return its path."""
    return write_page(folder, render_html_report(folder, document, audit, exclusion, lang))
