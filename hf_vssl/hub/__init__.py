"""The Hub side of hf_vssl: model cards, reports, publishing and repo naming.

- :func:`write_model_card` / :func:`build_model_card`: a ``huggingface_hub.ModelCard`` with a
  ``model-index`` of every result the recipes measured, from the reports in a checkpoint folder;
- :func:`assemble_reports`: copy metrics / robustness / CKA / run files into the folder, then
  write the card;
- :func:`publish` / :func:`publish_dataset`: one-commit uploads with clear errors
  (:class:`HubPublishError`) that never modify the local folder on failure;
- :func:`repo_name`: ``{task}-{backbone}-{dataset}-{subset}``, e.g. ``rspnet-r21d-k400-50k``.

Loading by id needs nothing from here: ``import hf_vssl`` then
``AutoModel.from_pretrained("org/rspnet-r21d-k400-50k")`` (cached; works with
``HF_HUB_OFFLINE=1`` after the first download).
"""

from hf_vssl.hub.cards import assemble_reports, build_model_card, eval_results, write_model_card
from hf_vssl.hub.naming import repo_name
from hf_vssl.hub.publish import DEFAULT_IGNORE_PATTERNS, HubPublishError, publish, publish_dataset
from hf_vssl.hub.reports import place_reports, read_reports

__all__ = [
    "DEFAULT_IGNORE_PATTERNS",
    "HubPublishError",
    "assemble_reports",
    "build_model_card",
    "eval_results",
    "place_reports",
    "publish",
    "publish_dataset",
    "read_reports",
    "repo_name",
    "write_model_card",
]
