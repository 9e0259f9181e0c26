"""Command-line tools: duse-make-bag and duse-eval-bag."""
