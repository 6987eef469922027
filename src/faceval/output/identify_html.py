"""``report.html`` of ``faceval identify``: the page of ``identification.json``'s document, in English or Japanese.

Built from `faceval.output.html_report`'s blocks (page skeleton, embedded CJK glyphs, escaping, tables, figures), so it
is self-contained and escapes every user string the same way: rank accuracy and CMC, FNIR at FPIR 1e-1 / 1e-2 / 1e-3
with thresholds in the model's units and the rule-of-three flag, per-group rates at the global threshold with
their intervals, FPIR against gallery size, the plots and the run's notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faceval.output.html_report import Page, escape, interval_cell, number, page_html, table, write_page
from faceval.stats.identification import ALL_SEARCHES

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "faceval 1:N identification report",
        "searches_text": "{images} images of {identities} identities: {gallery} gallery images, {probes} probe "
        "images (roles: {roles})",
        "accuracy": "Searches and rank accuracy",
        "accuracy_intro": "A mated search is a probe whose identity is in the gallery; rank-k is the share of mated "
        "searches whose mate is among the top k candidates (ties count at the worse rank).",
        "gallery_ids": "Gallery identities",
        "gallery_images": "Gallery images",
        "mated": "Mated searches",
        "nonmated": "Non-mated searches",
        "failed_roles": "Failed (gallery / probe)",
        "open_set": "FNIR at FPIR: the threshold to use",
        "open_set_intro": "{model}: accept a candidate when {accept} ({units}). FPIR: share of non-mated searches "
        "whose top candidate passes the threshold; FNIR(T, {rank}): share of mated searches whose mate is not "
        "within the top {rank} or fails it.",
        "target": "Target FPIR",
        "threshold": "Threshold",
        "fnir": "FNIR",
        "fpir": "FPIR reached",
        "fnir_failures": "FNIR counting failed probes",
        "measurable": "Measurable",
        "yes": "yes",
        "no_support": "no*",
        "no_threshold_value": "none (nothing accepted)",
        "rule_of_three": "* Too few non-mated searches to measure that FPIR: the rule of three needs 3 / FPIR "
        "(30, 300, 3,000). Keep more identities out of the gallery (--nonmated) or add probes of people not "
        "enrolled.",
        "groups_title": "Groups of probes at one global threshold",
        "groups_intro": "{model}: threshold {threshold} ({units}, {chosen}), R = {rank}; 95 % intervals from "
        "{resamples} resamples of the probes' identities (the gallery stays fixed).",
        "chosen_given": "given",
        "chosen_fpir": "reaching {target} over all non-mated searches",
        "chosen_none": "none: needs mated and non-mated searches",
        "all_searches": "all searches",
        "rank1": "Rank-1",
        "rank_k": "rank-{rank}",
        "gallery_size": "FPIR against gallery size",
        "gallery_size_intro": "{model}: the same non-mated searches against random sub-galleries of growing size, "
        "at threshold {threshold} ({units}): false positives grow with the gallery.",
        "size": "Gallery identities",
    },
    "ja": {
        "title": "faceval 1:N 識別レポート",
        "searches_text": "{identities} 人の画像 {images} 枚：ギャラリー画像 {gallery} 枚、プローブ画像 {probes} 枚"
        "（役割：{roles}）",
        "accuracy": "検索と順位の精度",
        "accuracy_intro": "登録済み本人の検索とは、本人がギャラリーにいるプローブの検索です。"
        "k 位正解率は、そのうち本人が上位 k 候補に入った割合です（同点は悪い方の順位に数えます）。",
        "gallery_ids": "ギャラリーの人数",
        "gallery_images": "ギャラリー画像",
        "mated": "登録済み本人の検索",
        "nonmated": "未登録者の検索",
        "failed_roles": "失敗（ギャラリー / プローブ）",
        "open_set": "FPIR ごとの FNIR：使うべき閾値",
        "open_set_intro": "{model}：{accept} のとき候補を受け入れ（{units}）。"
        "FPIR は未登録者の検索のうち第 1 候補が閾値を通る割合、"
        "FNIR(T, {rank}) は登録済み本人の検索のうち本人が上位 {rank} に入らないか閾値を通らない割合です。",
        "target": "目標 FPIR",
        "threshold": "閾値",
        "fnir": "FNIR",
        "fpir": "達成した FPIR",
        "fnir_failures": "失敗したプローブを含む FNIR",
        "measurable": "測定可能",
        "yes": "はい",
        "no_support": "いいえ*",
        "no_threshold_value": "なし（何も受け入れない）",
        "rule_of_three": "* この FPIR を測るには未登録者の検索が足りません。3 の法則により 3 / FPIR 件"
        "（30、300、3,000 件）が必要です。ギャラリーから外す人物を増やす（--nonmated）か、"
        "未登録者のプローブを追加してください。",
        "groups_title": "共通閾値でのプローブのグループ別の指標",
        "groups_intro": "{model}：閾値 {threshold}（{units}、{chosen}）、R = {rank}。95 % 区間は"
        "プローブの人物を {resamples} 回リサンプリングして求めました（ギャラリーは固定）。",
        "chosen_given": "指定した値",
        "chosen_fpir": "未登録者の検索全体で FPIR {target} になる値",
        "chosen_none": "なし：登録済み本人と未登録者の両方の検索が必要",
        "all_searches": "全検索",
        "rank1": "1 位正解率",
        "rank_k": "{rank} 位以内",
        "gallery_size": "ギャラリーの大きさと FPIR",
        "gallery_size_intro": "{model}：同じ未登録者の検索を、大きさを変えた無作為なギャラリーの一部に対して"
        "閾値 {threshold}（{units}）で行った結果。ギャラリーが大きいほど誤検出が増えます。",
        "size": "ギャラリーの人数",
    },
}


class IdentificationPage(Page):
    """The sections of ``identification.json``'s report."""

    def __init__(self, folder: Path, document: Mapping[str, Any], lang: str) -> None:
        super().__init__(folder, document, lang, TEXT)

    def figures_of(self, entry: Mapping[str, Any], *keys: str) -> str:
        """The figures ``keys`` of an entry's ``files`` (the document's or a model's) that were written."""
        files = entry.get("files", {})
        return self.figure_grid(files[key] for key in keys if key in files)

    def threshold_text(self, value: float | None) -> str:
        return self.say("no_threshold_value") if value is None else escape(number(value))

    def group_name(self, name: str) -> str:
        return self.say("all_searches") if name == ALL_SEARCHES else escape(name)

    def data(self) -> str:
        dataset = self.document["dataset"]
        return self.say(
            "searches_text",
            images=f"{dataset['n_images']:,}",
            identities=f"{dataset['n_identities']:,}",
            gallery=f"{dataset['n_gallery_images']:,}",
            probes=f"{dataset['n_probe_images']:,}",
            roles=dataset["roles"],
        )

    def accuracy(self) -> str:
        models = self.document["models"]
        ranks = sorted({rank for model in models.values() for rank in model["cmc"]}, key=int)
        header = [self.say(k) for k in ("model", "gallery_ids", "gallery_images", "mated", "nonmated")]
        header += [self.say("failed_roles")] + [self.say("rank_k", rank=rank) for rank in ranks]
        rows = [
            [
                escape(name),
                number(model["gallery_identities"]),
                number(model["n_gallery_images"]),
                number(model["n_mated"]),
                number(model["n_nonmated"]),
                f"{number(model['n_failed']['gallery'])} / {number(model['n_failed']['probe'])}",
                *(escape(number(model["cmc"].get(rank), 3)) for rank in ranks),
            ]
            for name, model in models.items()
        ]
        return (
            f"<h2>{self.say('accuracy')}</h2><p>{self.say('accuracy_intro')}</p>"
            + table(header, rows, [False] + [True] * (len(header) - 1))
            + self.figures_of(self.document, "cmc", "fnir_fpir")
        )

    def open_set(self) -> str:
        parts, unsupported = [], False
        header = [self.say(k) for k in ("target", "threshold", "fnir", "fpir", "fnir_failures", "nonmated")]
        header.append(self.say("measurable"))
        for name, model in self.document["models"].items():
            rows = []
            for key, point in model["fnir_at_fpir"].items():
                if point is None:
                    continue
                unsupported |= not point["supported"]
                rows.append(
                    [
                        escape(key),
                        self.threshold_text(point["threshold"]),
                        escape(number(point["fnir"], 3)),
                        escape(number(point["fpir"], 4)),
                        escape(number(point.get("fnir_with_failures"), 3)),
                        number(point["n_nonmated"]),
                        self.say("yes" if point["supported"] else "no_support"),
                    ]
                )
            if not rows:
                continue
            intro = self.say(
                "open_set_intro",
                model=name,
                accept=self.term(model["accept_when"]),
                units=self.term(model["units"]),
                rank=model["rank"],
            )
            parts.append(f"<h3>{escape(name)}</h3><p>{intro}</p>" + table(header, rows, [False] + [True] * 6))
        if unsupported:
            parts.append(f"<p>{self.say('rule_of_three')}</p>")
        return f"<h2>{self.say('open_set')}</h2>" + "".join(parts) if parts else ""

    def chosen(self, chosen_by: str) -> str:
        """How the global threshold was chosen, in the page's language (plain text: `say` escapes it)."""
        if chosen_by == "given":
            return self.t["chosen_given"]
        if chosen_by.startswith("FPIR "):
            return self.t["chosen_fpir"].format(target=chosen_by.removeprefix("FPIR "))
        return self.t["chosen_none"]

    def groups(self) -> str:
        parts = []
        for name, model in self.document["models"].items():
            groups = model["groups"]
            if not groups:
                continue
            header = [self.say(k) for k in ("group", "identities", "mated", "nonmated", "rank1")]
            header += [f"FNIR(T, {model['rank']})", "FPIR(T)"]
            chosen = model["global_threshold"]
            intro = self.say(
                "groups_intro",
                model=name,
                threshold="–" if chosen["threshold"] is None else number(chosen["threshold"]),
                units=self.term(model["units"]),
                chosen=self.chosen(chosen["chosen_by"]),
                rank=model["rank"],
                resamples=model["bootstrap"]["n_resamples"],
            )
            rows = [
                [
                    self.group_name(group),
                    number(entry["n_identities"]),
                    number(entry["n_mated"]),
                    number(entry["n_nonmated"]),
                    interval_cell(entry["rank1"], entry["rank1_ci"]),
                    interval_cell(entry["fnir"], entry["fnir_ci"]),
                    interval_cell(entry["fpir"], entry["fpir_ci"], 4),
                ]
                # "all" last, below the groups it sums up
                for group, entry in sorted(groups.items(), key=lambda item: item[0] == ALL_SEARCHES)
            ]
            parts.append(f"<h3>{escape(name)}</h3><p>{intro}</p>" + table(header, rows, [False] + [True] * 6))
            parts.append(self.figures_of(model, "groups"))
        return f"<h2>{self.say('groups_title')}</h2>" + "".join(parts) if parts else ""

    def gallery_size(self) -> str:
        parts = []
        for name, model in self.document["models"].items():
            by_size = model.get("fpir_by_gallery_size")
            if not by_size or not by_size["fpir"]:
                continue
            header = [f"{self.say('group')} \\ {self.say('size')}"] + [number(size) for size in by_size["sizes"]]
            rows = [
                [self.group_name(group), *(escape(number(value, 4)) for value in values)]
                for group, values in sorted(by_size["fpir"].items(), key=lambda item: item[0] == ALL_SEARCHES)
            ]
            intro = self.say(
                "gallery_size_intro",
                model=name,
                threshold=number(model["global_threshold"]["threshold"]),
                units=self.term(model["units"]),
            )
            parts.append(
                f"<h3>{escape(name)}</h3><p>{intro}</p>"
                + table(header, rows, [False] + [True] * len(by_size["sizes"]))
                + self.figures_of(model, "fpir_gallery_size")
            )
        return f"<h2>{self.say('gallery_size')}</h2>" + "".join(parts) if parts else ""


def render_identification_report(folder: str | Path, document: Mapping[str, Any], lang: str = "en") -> str:
    """The identification page as a string; figures are read from ``folder`` (the output folder)."""
    page = IdentificationPage(Path(folder), document, lang)
    return page_html(
        page,
        (page.run(page.data()), page.accuracy(), page.open_set(), page.groups(), page.gallery_size(), page.notes()),
    )


def write_identification_report(folder: str | Path, document: Mapping[str, Any], lang: str = "en") -> Path:
    """Write the identification ``report.html`` into ``folder`` (atomically) and return its path."""
    return write_page(folder, render_identification_report(folder, document, lang))
