"""`python -m edpn_gui`: the same as the `edpn-gui` command."""
import sys

from edpn_gui.app import main

sys.exit(main())
