"""Placeholder for the study report renderer (replaced by the "study-results" branch at merge)."""
from pathlib import Path


def render_report(study_dir) -> list[Path]:
    """Placeholder: renders nothing until the report module is merged."""
    return []
