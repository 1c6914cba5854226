"""Write the key map's table into README.md, between its `<!-- keys:start -->` and `<!-- keys:end -->` markers
(section "Keys"): `python scripts/readme_keys.py`. tests/ui/test_keymap.py fails while the two differ."""

from pathlib import Path

from vgtui.ui.keymap import markdown

START, END = "<!-- keys:start -->", "<!-- keys:end -->"


def main() -> None:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{markdown()}\n{END}{tail}"
    if new != text:
        readme.write_text(new)
    print(f"{readme}: the key table is the key map's ({'rewritten' if new != text else 'unchanged'})")


if __name__ == "__main__":
    main()
