"""Developer tools that live beside the package, not in it: `tools/demo/` trains and checks the shipped demo pair."""
