from vgtui.cli import main

if __name__ == "__main__":  # guarded: the trainer's child process (spawn) re-imports this module
    raise SystemExit(main())
