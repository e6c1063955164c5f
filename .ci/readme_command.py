"""Print one of README.md's fenced bash commands, so that CI runs exactly what a newcomer copies.

python .ci/readme_command.py 0   # the main job (install, train, save, evaluate)
python .ci/readme_command.py 1   # the tests
"""

import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def main() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    index = int(sys.argv[1])
    if index >= len(blocks):
        sys.exit(f"README.md has {len(blocks)} bash blocks, none at index {index}")
    print(blocks[index].strip())


if __name__ == "__main__":
    main()
