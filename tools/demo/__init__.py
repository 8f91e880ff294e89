"""The demo pair's training, distillation and evaluation (not part of the installed package)."""
