"""The import worker's entry point: ``python -m dialerd.store.sqlite.import_worker``
(``dialerd.store.sqlite.import_process``)."""

import sys

from dialerd.store.sqlite.import_process import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
