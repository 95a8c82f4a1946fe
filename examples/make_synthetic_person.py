"""Regenerate the bundled example photo ``examples/person.png`` (synthetic, made by us).

    python examples/make_synthetic_person.py

The person is our own anny body wearing a procedural outfit, rendered by our renderer over a
studio backdrop (see avatarcli/pipelines/synthetic.py). No third-party image is involved.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from avatarcli.body import load_body
from avatarcli.pipelines.synthetic import synthetic_person

HERE = Path(__file__).resolve().parent


def main() -> None:
    person = synthetic_person(load_body("anny"), size=(512, 768), seed=0)
    Image.fromarray(person.image).save(HERE / "person.png", optimize=True)
    Image.fromarray(person.mask).save(HERE / "person_mask.png", optimize=True)
    print(f"wrote {HERE / 'person.png'} and {HERE / 'person_mask.png'}")


if __name__ == "__main__":
    main()
