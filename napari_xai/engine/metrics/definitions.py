"""What every number :func:`napari_xai.engine.evaluate` returns means, and where it comes from.

One table, :data:`METRICS`, read by the docs, the napari dock's tooltips and
the Slicer module's table, so a definition is written once; and one ordered
list of the scalar columns every trust table shows, :data:`METRIC_COLUMNS`
(the napari dock, the Slicer module's table, Compare's table, the report's
trust page and the cohort table all take their columns, labels and
definitions from it). Thresholds of
the two yes/no verdicts (``sanity_passed``, ``shortcut_flag``) are constants
here, so that the documentation and the code cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PETSIUK_2018 = "Petsiuk V, Das A, Saenko K. RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC 2018."
ADEBAYO_2018 = "Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity Checks for Saliency Maps. NeurIPS 2018."
WANG_2004 = "Wang Z, Bovik AC, Sheikh HR, Simoncelli EP. Image Quality Assessment: From Error Visibility to Structural Similarity. IEEE Trans Image Process 13(4), 2004."
SUNDARARAJAN_2017 = "Sundararajan M, Taly A, Yan Q. Axiomatic Attribution for Deep Networks. ICML 2017 (completeness); Bach S et al. On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation. PLoS ONE 2015 (conservation)."
ZHANG_2016 = "Zhang J, Lin Z, Brandt J, Shen X, Sclaroff S. Top-down Neural Attention by Excitation Backprop. ECCV 2016 (the pointing game)."
ARRAS_2022 = "Arras L, Osman A, Samek W. CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural network explanations. Information Fusion 81, 2022 (relevance mass and relevance rank accuracy)."
LAPUSCHKIN_2019 = "Lapuschkin S, Waeldchen S, Binder A, Montavon G, Samek W, Mueller KR. Unmasking Clever Hans predictors and assessing what machines really learn. Nature Communications 10, 2019."
OTSU_1979 = "Otsu N. A Threshold Selection Method from Gray-Level Histograms. IEEE Trans Syst Man Cybern 9(1), 1979."

#: ``sanity_passed`` is True when the Spearman rank correlation of |map| with
#: |map on the fully randomised model| is below this. Adebayo et al. read
#: their figures by eye; 0.5 separates the gradient family (near 0 once all
#: layers are randomised) from maps that mostly reproduce the image (guided
#: backprop stays above ~0.8 in their Fig. 2, an edge filter is exactly 1).
SANITY_SPEARMAN_THRESHOLD = 0.5
#: Fraction of the scan's voxels whose location ``outside_anatomy_top_share`` reports (the top 0.1 %).
TOP_FRACTION = 0.001
#: ``shortcut_flag`` fires when the map's peak lies outside the anatomy AND at
#: least this share of its top voxels does too (see :func:`shortcut_rule`).
SHORTCUT_TOP_SHARE = 0.25


@dataclass(frozen=True)
class MetricDoc:
    """One key of the evaluation dict.

    Parameters
    ----------
    key : str
        Key in the dict.
    title : str
        Column heading for tables.
    group : str
        Which part of the evaluation computes it (the names ``metrics=`` takes).
    definition : str
        What the number is, exactly.
    reference : str
        The published source of the definition.
    better : str
        ``lower``, ``higher``, ``true``, ``false`` or ``""`` (no direction).
    source : tuple of str
        Where a table column reads its value in the evaluation dict: a path
        of keys (empty: the column's own key).
    """

    key: str
    title: str
    group: str
    definition: str
    reference: str
    better: str = ""
    source: tuple[str, ...] = ()

    def value(self, result: dict[str, Any]) -> Any:
        """This column's value in an evaluation dict (None where it is missing)."""
        value: Any = result
        for part in self.source or (self.key,):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def present(self, result: dict[str, Any]) -> bool:
        """The evaluation dict has this column's entry (as None or a value)."""
        *path, last = self.source or (self.key,)
        parent: Any = result
        for part in path:
            parent = parent.get(part) if isinstance(parent, dict) else None
        return isinstance(parent, dict) and last in parent

    def tooltip(self) -> str:
        """Definition, direction and reference in a few lines, for hosts."""
        direction = {"lower": "Lower is better.", "higher": "Higher is better.", "true": "True is good.", "false": "False is good."}.get(self.better, "")
        return f"{self.title}: {self.definition} {direction}\nReference: {self.reference}"


_CURVE = (
    "The target's score as the most-attributed voxels of the model input are removed step by step "
    "(each step removes another 1/steps of the voxels, ordered by signed attribution, ties broken at random, seeded); "
    "a removed voxel takes the reference image's value (removal = blur: a Gaussian-blurred copy of the input; noise: "
    "the input's mean plus Gaussian noise of its standard deviation, seeded; baseline: a constant, zeros/min/mean). "
)
_INSERT = (
    "The target's score as the most-attributed voxels are inserted into the reference image step by step "
    "(the reverse of deletion: start from the reference, put back 1/steps of the original voxels per step). "
)
_AUC = " The area is the trapezoid integral of the score over the removed (inserted) fraction in [0, 1], in the score's units (the class probability for a classifier by default, else the target's raw score)."

METRICS: dict[str, MetricDoc] = {
    doc.key: doc
    for doc in (
        MetricDoc("deletion_auc", "deletion AUC", "faithfulness", _CURVE + _AUC + " A faithful map makes the score fall fast.", PETSIUK_2018, "lower"),
        MetricDoc("insertion_auc", "insertion AUC", "faithfulness", _INSERT + _AUC + " A faithful map makes the score rise fast.", PETSIUK_2018, "higher"),
        MetricDoc("random_deletion_auc", "random deletion AUC", "faithfulness", "deletion_auc of the same procedure with a random voxel order (seeded): the level a map must beat.", PETSIUK_2018, "lower"),
        MetricDoc("random_insertion_auc", "random insertion AUC", "faithfulness", "insertion_auc with a random voxel order (seeded): the level a map must beat.", PETSIUK_2018, "higher"),
        MetricDoc("deletion_curve", "deletion curve", "faithfulness", "The deletion curve itself: {'fraction': [...], 'score': [...]} (steps + 1 points); random_deletion_curve is the random order's.", PETSIUK_2018),
        MetricDoc("insertion_curve", "insertion curve", "faithfulness", "The insertion curve itself: {'fraction': [...], 'score': [...]}; random_insertion_curve is the random order's.", PETSIUK_2018),
        MetricDoc(
            "faithfulness_gain",
            "faithfulness gain",
            "faithfulness",
            "(random_deletion_auc - deletion_auc) + (insertion_auc - random_insertion_auc): how much better than a random order the map orders the evidence, in score units; 0 is no better than random. Compare ranks methods by it.",
            PETSIUK_2018,
            "higher",
        ),
        MetricDoc(
            "sanity_similarity",
            "sanity similarity",
            "sanity",
            "The model-randomisation test: the same method, with the same parameters, is rerun on a deep copy of the model whose weights "
            "(every convolution and linear layer's weight and bias) are redrawn from a normal distribution with the original tensor's standard deviation (seeded). "
            "'cascading': layers randomised cumulatively from the top (output) layer down, at sanity_steps checkpoints ending with every layer; "
            "'independent': one layer at a time. Each entry gives the Spearman rank correlation of |map| with |randomised map| and the SSIM "
            "(Wang et al. 2004, Gaussian window sigma 1.5, both maps scaled to [0, 1]); 'spearman' and 'ssim' at the top level are those of the fully randomised model.",
            ADEBAYO_2018 + " SSIM: " + WANG_2004,
            "lower",
        ),
        MetricDoc(
            "sanity_passed",
            "sanity passed",
            "sanity",
            f"True when the map changes with the model: the Spearman correlation of |map| with the fully randomised model's |map| is below {SANITY_SPEARMAN_THRESHOLD}. "
            "False means the map explains the image more than the model (as guided backprop and edge detectors do).",
            ADEBAYO_2018,
            "true",
        ),
        MetricDoc(
            "completeness_error",
            "completeness error",
            "completeness",
            "|sum of the map - (f(x) - f(baseline))| / |f(x) - f(baseline)| for methods that promise completeness "
            "(integrated gradients, DeepLIFT, DeepLIFT-SHAP), or |sum - output relevance| / |output relevance| for LRP's conservation; None for methods that promise neither.",
            SUNDARARAJAN_2017,
            "lower",
        ),
        MetricDoc("mass_in_mask", "mass in mask", "localisation", "Relevance mass accuracy: the share of the map's positive attribution that lies inside the mask (a lesion, a region); None without a mask, or for a map with no positive value (then pointing_game and relevance_rank are None too).", ARRAS_2022, "higher"),
        MetricDoc(
            "pointing_game",
            "pointing game",
            "localisation",
            "A hit (True) when the map's maximum (its most positive voxel; any of them on ties) lies inside the mask, grown by pointing_tolerance_mm millimetres (default 0: no tolerance); None without a mask.",
            ZHANG_2016,
            "true",
        ),
        MetricDoc(
            "relevance_rank",
            "relevance rank",
            "localisation",
            "Relevance rank accuracy: with K the number of mask voxels, the share of the map's K highest voxels that lie inside the mask; None without a mask.",
            ARRAS_2022,
            "higher",
        ),
        MetricDoc(
            "outside_anatomy_share",
            "outside anatomy (mass)",
            "anatomy",
            "The share of the map's positive attribution outside the anatomy (the body); None, with the other anatomy keys, for a map with no positive value. The anatomy is the given boolean mask, or, when none is given, "
            "derived from the scan: Otsu's threshold on the first channel, the largest connected component, holes filled in 3D and then in each slice along the first axis "
            "(Otsu 1979). Gradient maps spread over the whole field of view, so mass alone does not separate a shortcut for every method: read it with the peak and the top share.",
            OTSU_1979 + " Shortcut (Clever Hans) models: " + LAPUSCHKIN_2019,
            "lower",
        ),
        MetricDoc("outside_anatomy_peak", "peak outside anatomy", "anatomy", "True when the map's maximum (its most positive voxel; all of them on ties) lies outside the anatomy: the pointing game against the anatomy, lost.", LAPUSCHKIN_2019, "false"),
        MetricDoc(
            "outside_anatomy_top_share",
            "top voxels outside anatomy",
            "anatomy",
            f"The share of the map's top voxels (the top_fraction = {TOP_FRACTION} of all voxels with the highest values, at least one) that lie outside the anatomy.",
            LAPUSCHKIN_2019,
            "lower",
        ),
        MetricDoc(
            "shortcut_flag",
            "shortcut flag",
            "anatomy",
            f"True when the map's strongest evidence lies outside the body: outside_anatomy_peak is True and outside_anatomy_top_share >= {SHORTCUT_TOP_SHARE}. "
            "On the sample models it flags the shortcut model (a marker outside the head) for vanilla gradient, integrated gradients and occlusion, and never the lesion classifier. "
            "A flag says: check the scan for burned-in text, markers, rulers or tubes the model may read instead of the anatomy.",
            LAPUSCHKIN_2019,
            "false",
        ),
    )
}

#: The trust table's scalar columns, in the order every host and file shows
#: them: the one list the napari dock, the Slicer module, Compare's table,
#: the report's trust page and the cohort table read (labels are ``title``,
#: definitions ``tooltip()``). ``sanity_spearman`` / ``sanity_ssim`` are the
#: fully randomised model's entries of ``sanity_similarity``.
METRIC_COLUMNS: tuple[MetricDoc, ...] = (
    METRICS["deletion_auc"],
    METRICS["random_deletion_auc"],
    METRICS["insertion_auc"],
    METRICS["random_insertion_auc"],
    METRICS["faithfulness_gain"],
    MetricDoc(
        "sanity_spearman",
        "sanity Spearman",
        "sanity",
        f"Spearman rank correlation of |map| with the fully randomised model's |map| (sanity_similarity['spearman']); below {SANITY_SPEARMAN_THRESHOLD} passes.",
        METRICS["sanity_similarity"].reference,
        "lower",
        ("sanity_similarity", "spearman"),
    ),
    MetricDoc(
        "sanity_ssim",
        "sanity SSIM",
        "sanity",
        "SSIM of |map| with the fully randomised model's |map|, both scaled to [0, 1] (sanity_similarity['ssim']).",
        METRICS["sanity_similarity"].reference,
        "lower",
        ("sanity_similarity", "ssim"),
    ),
    METRICS["sanity_passed"],
    METRICS["completeness_error"],
    METRICS["mass_in_mask"],
    METRICS["pointing_game"],
    METRICS["relevance_rank"],
    METRICS["outside_anatomy_share"],
    METRICS["outside_anatomy_peak"],
    METRICS["outside_anatomy_top_share"],
    METRICS["shortcut_flag"],
)
#: The columns' keys, in order.
TABLE_KEYS: tuple[str, ...] = tuple(doc.key for doc in METRIC_COLUMNS)
#: Earlier names of columns -> their key in :data:`TABLE_KEYS`. Cohort tables
#: written before the one list called the two sanity columns by the
#: flattened dict path; :func:`canonical_key` reads them under the new name.
METRIC_ALIASES: dict[str, str] = {"sanity_similarity_spearman": "sanity_spearman", "sanity_similarity_ssim": "sanity_ssim"}
_COLUMNS_BY_KEY = {doc.key: doc for doc in METRIC_COLUMNS}


def canonical_key(name: str) -> str:
    """A column's key in :data:`TABLE_KEYS` for one of its earlier names (:data:`METRIC_ALIASES`); other names unchanged."""
    return METRIC_ALIASES.get(name, name)


def column_doc(key: str) -> MetricDoc:
    """The documentation of a table column (an earlier name too) or of any key of the evaluation dict (KeyError for unknown keys)."""
    key = canonical_key(key)
    return _COLUMNS_BY_KEY.get(key) or METRICS[key]


def column_values(result: dict[str, Any]) -> dict[str, Any]:
    """The table columns an evaluation dict holds, in :data:`TABLE_KEYS` order (absent ones left out)."""
    return {doc.key: doc.value(result) for doc in METRIC_COLUMNS if doc.present(result)}


def documented() -> tuple[MetricDoc, ...]:
    """What a host's definitions list shows: the table's columns in order, then the evaluation's other keys (curves, the sanity record)."""
    shown = {doc.key for doc in METRIC_COLUMNS}
    return METRIC_COLUMNS + tuple(doc for key, doc in METRICS.items() if key not in shown)


def reading(doc: MetricDoc) -> str:
    """How to read a metric: ``lower is better``, ``yes is good`` ... (empty without a direction)."""
    return {"lower": "lower is better", "higher": "higher is better", "true": "yes is good", "false": "no is good"}.get(doc.better, "")


def definitions_html() -> str:
    """Every definition with its reference, as HTML for a host's help window (one anchor per key, ``#<key>``)."""
    import html

    parts = ["<h3>How far a map can be trusted</h3>"]
    for doc in documented():
        how = f" <i>({reading(doc)})</i>" if reading(doc) else ""
        parts.append(
            f"<p><a name='{doc.key}'></a><b>{html.escape(doc.title)}</b> (<code>{doc.key}</code>){how}: {html.escape(doc.definition)}"
            f"<br>Reference: <i>{html.escape(doc.reference)}</i></p>"
        )
    return "\n".join(parts)


#: The evaluation's parts, in the order they run.
GROUPS = ("localisation", "anatomy", "completeness", "faithfulness", "sanity")


def shortcut_rule(peak_outside: bool | None, top_share: float | None) -> bool | None:
    """The documented ``shortcut_flag`` rule over ``outside_anatomy_peak`` and ``outside_anatomy_top_share``."""
    if peak_outside is None or top_share is None:
        return None
    return bool(peak_outside) and top_share >= SHORTCUT_TOP_SHARE


def metric_doc(key: str) -> MetricDoc:
    """The documentation of one key (KeyError for unknown keys)."""
    return METRICS[key]
