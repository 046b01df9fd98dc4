import sys

from hfcompress.cli.main import main

sys.exit(main())
