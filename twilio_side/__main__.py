"""`python -m twilio_side [--host H] [--port P]`: the REST emulator in the foreground."""

import sys

from twilio_side.emulator import main

sys.exit(main())
