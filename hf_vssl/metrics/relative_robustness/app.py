"""The Space app of this evaluate module (``app_file`` in its README): evaluate's Gradio widget."""

from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

if __name__ == "__main__":
    launch_gradio_widget(evaluate.load(str(Path(__file__).resolve().parent)))
