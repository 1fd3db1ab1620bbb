from recalld.cli import main

raise SystemExit(main())
