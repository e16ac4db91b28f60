"""The classroom tools on top of runs: `print_probs` and plots, the temperature lab, the GPT-2
comparison, and the `gpt-keras` command line that parses arguments and dispatches to them."""
