"""`python -m gpt_keras.tools.cli` is the `gpt-keras` command."""

import sys

from gpt_keras.tools.cli import main

sys.exit(main())
