"""The embedded demo's pair: a small EDM teacher trained on coloured digits and its DMD2 one-step student.

Same loaders and samplers as the ImageNet adapters; only the class names and the teacher's default
preset (deterministic, 18 steps, quick on a CPU) differ. Checkpoints ship in visualizer/assets/demo/.
"""

from __future__ import annotations

from pathlib import Path

from visualizer.adapters.dmd2 import DMD2Adapter
from visualizer.adapters.edm import EDMAdapter
from visualizer.models.sampling import HeunSettings

DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
DEMO_TEACHER = DEMO_DIR / "teacher.pkl"
DEMO_STUDENT = DEMO_DIR / "student" / "checkpoint_model_002920"
DEMO_EMBEDDINGS = DEMO_DIR / "embeddings" / "embeddings.csv"
DIGIT_NAMES = tuple(f"digit {i}" for i in range(10))
# What the digits pair is: a checkpoint that contradicts it is refused by name (DiffusionAdapter._check_fits).
DIGITS_ARCHITECTURE = {"resolution": 32, "channels": 3, "num_classes": len(DIGIT_NAMES)}


class DigitsTeacherAdapter(EDMAdapter):
    name = "edm-digits-32"
    # The small digits teacher: deterministic, 18 steps (NFE 35), interactive on a CPU.
    presets = {**EDMAdapter.presets, "demo": HeunSettings(num_steps=18, S_churn=0, S_noise=1)}
    default_preset = "demo"
    default_class_names = DIGIT_NAMES
    fixed_architecture = DIGITS_ARCHITECTURE


class DigitsStudentAdapter(DMD2Adapter):
    name = "dmd2-digits-32"
    default_class_names = DIGIT_NAMES
    fixed_architecture = DIGITS_ARCHITECTURE
