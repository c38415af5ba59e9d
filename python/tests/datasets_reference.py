"""The Hugging Face `datasets` side of bertlab's corpus tests: prepares a
corpus the way a user's `datasets` does, so the Rust tests can read it.

  datasets_reference.py make-corpus WORK TXT...
      Makes WORK/repo/tiny, a local dataset repository whose configuration
      `paragraphs` is the TXT files, one paragraph a row (as bertlab's .txt
      reader splits documents), and prepares it with `load_dataset` into
      the cache WORK/cache (num_proc=2: the split lands in two Arrow
      shards); copies that cache entry to `org___tiny`, where a hub dataset
      `org/tiny` lives; writes the split with `save_to_disk` to WORK/saved
      (two shards) and the whole DatasetDict to WORK/saved-dict. Then,
      offline, asks `datasets` for each of `tiny/paragraphs` and `org/tiny`
      which files it reads from its cache, and prints them as JSON:
      {"tiny/paragraphs": [...], "org/tiny": [...]}.
"""
import json
import os
import shutil
import sys


def make_corpus(work, *txt):
    cache = os.path.join(work, "cache")
    os.environ["HF_DATASETS_CACHE"] = cache
    import datasets  # reads HF_DATASETS_CACHE when imported

    datasets.disable_progress_bars()
    repo = os.path.join(work, "repo", "tiny")
    os.makedirs(repo)
    files = []
    for i, source in enumerate(txt):
        name = f"part{i}.txt"
        shutil.copy(source, os.path.join(repo, name))
        files.append(name)
    card = "---\nconfigs:\n- config_name: paragraphs\n  sample_by: paragraph\n  data_files:\n  - split: train\n    path:\n"
    card += "".join(f"    - {name}\n" for name in files)
    card += "  - split: test\n    path: " + files[-1] + "\n---\n"
    with open(os.path.join(repo, "README.md"), "w") as f:
        f.write(card)
    prepared = datasets.load_dataset(repo, "paragraphs", num_proc=2)
    shutil.copytree(os.path.join(cache, "tiny"), os.path.join(cache, "org___tiny"))
    prepared["train"].save_to_disk(os.path.join(work, "saved"), num_shards=2)
    prepared.save_to_disk(os.path.join(work, "saved-dict"))

    # What datasets itself reads offline for each name.
    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True
    os.chdir(work)  # so that `tiny` is not a local folder
    found = {}
    for name, config in [("tiny", "paragraphs"), ("org/tiny", None)]:
        split = datasets.load_dataset(name, config, split="train")
        found[name + (f"/{config}" if config else "")] = [f["filename"] for f in split.cache_files]
    print(json.dumps(found))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"make-corpus": make_corpus}[command](*args)
