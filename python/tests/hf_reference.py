"""The Hugging Face side of bertlab's interop tests: makes reference models
and runs them with `transformers`, so the Rust tests can compare numbers.

  hf_reference.py make-model DIR [LAYOUT]
                                      random BertForMaskedLM of an odd shape,
                                      weights perturbed off their init, saved
                                      with save_pretrained as LAYOUT
                                      (masked-lm, untied, pretraining,
                                      bert-model, sequence-classification);
                                      DIR/input.json (a padded batch with token
                                      types) and DIR/expected.safetensors (the
                                      masked-LM model's outputs)
  hf_reference.py forward DIR IN OUT  load DIR with from_pretrained (fails on
                                      any missing or unexpected weight) and
                                      write last_hidden_state and logits of IN
  hf_reference.py param-counts        num_parameters() of the published BERT
                                      sizes, as JSON
  hf_reference.py classify DIR TSV SEQ_LEN
                                      load DIR as BertForSequenceClassification
                                      (fails on any missing or unexpected
                                      weight), read TSV's `sentence` and
                                      `label` columns with BertTokenizer on
                                      DIR/vocab.txt, and print the mean
                                      cross-entropy and the accuracy as JSON
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification,
                          BertModel)
from transformers.utils import logging


def outputs(model, batch):
    tensors = {k: torch.tensor(v) for k, v in batch.items()}
    model.eval()
    with torch.no_grad():
        out = model(**tensors, output_hidden_states=True)
    return {"last_hidden_state": out.hidden_states[-1].contiguous(), "logits": out.logits.contiguous()}


LAYOUTS = {"masked-lm": BertForMaskedLM, "untied": BertForMaskedLM, "pretraining": BertForPreTraining,
           "bert-model": BertModel, "sequence-classification": BertForSequenceClassification}


def make_model(folder, layout="masked-lm", weights="safetensors"):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=97, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=50, max_position_embeddings=40, type_vocab_size=2,
        attn_implementation="eager", tie_word_embeddings=layout != "untied",
    )
    model = BertForMaskedLM(config)
    with torch.no_grad():
        # Off their init (zero biases, unit LayerNorm) so that a weight
        # loaded into the wrong place cannot go unnoticed.
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    saved = LAYOUTS[layout](config)
    # The same weights under the other layout's names; what it adds (a
    # pooler, the NSP head, a classifier) keeps its own initialisation.
    missing = saved.load_state_dict(model.state_dict() if layout in ("masked-lm", "untied") else
                                    {k.removeprefix("bert.") if layout == "bert-model" else k: v
                                     for k, v in model.state_dict().items()}, strict=False)
    assert not [k for k in missing.missing_keys if "encoder" in k or "embeddings" in k], missing
    save_weights(saved, folder, weights)
    batch = {
        "input_ids": [[2, 15, 40, 7, 96, 3, 0, 0], [2, 5, 61, 88, 3, 30, 12, 3]],
        "attention_mask": [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]],
        "token_type_ids": [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]],
    }
    with open(f"{folder}/input.json", "w") as f:
        json.dump(batch, f)
    save_file(outputs(model, batch), f"{folder}/expected.safetensors")


def save_weights(model, folder, weights):
    """`model` saved in `folder` as `weights` says: `safetensors`
    (save_pretrained's default), `sharded` (safetensors shards and their
    index, as save_pretrained writes a model above max_shard_size), `bin`
    (`torch.save` of the state dict, as save_pretrained wrote it with
    safe_serialization=False before transformers 5) or `bin-sharded` (two
    such files and their `pytorch_model.bin.index.json`)."""
    model.save_pretrained(folder, **({"max_shard_size": "40KB"} if weights == "sharded" else {}))
    if weights.startswith("bin"):
        os.remove(f"{folder}/model.safetensors")
        state = model.state_dict()
        if weights == "bin":
            torch.save(state, f"{folder}/pytorch_model.bin")
            return
        names = list(state)
        shards = {f"pytorch_model-0000{i + 1}-of-00002.bin": names[i::2] for i in range(2)}
        for shard, keys in shards.items():
            torch.save({k: state[k] for k in keys}, f"{folder}/{shard}")
        index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
        with open(f"{folder}/pytorch_model.bin.index.json", "w") as f:
            json.dump(index, f)


def load_exactly(architecture, folder):
    """`architecture.from_pretrained(folder)`, failing on any missing,
    unexpected or misshapen weight, in eval mode."""
    logging.set_verbosity_warning()
    model, info = architecture.from_pretrained(folder, output_loading_info=True, attn_implementation="eager")
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"loading {folder}: {problems}")
    return model.eval()


def forward(folder, input_path, out_path):
    model = load_exactly(BertForMaskedLM, folder)
    with open(input_path) as f:
        batch = json.load(f)
    save_file(outputs(model, batch), out_path)


def classify(folder, tsv, seq_len):
    from transformers import BertTokenizer
    model = load_exactly(BertForSequenceClassification, folder)
    tokenizer = BertTokenizer(f"{folder}/vocab.txt", do_lower_case=True)
    with open(tsv) as f:
        header, *rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    text, label = header.index("sentence"), header.index("label")
    label_of = {name: i for i, name in model.config.id2label.items()}
    labels = torch.tensor([int(label_of[row[label]]) for row in rows])
    batch = tokenizer([row[text] for row in rows], padding=True, truncation=True, max_length=int(seq_len), return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    print(json.dumps({"loss": loss, "accuracy": accuracy}))


SIZES = [("BERT-Tiny", 2, 128), ("BERT-Mini", 4, 256), ("BERT-Small", 4, 512),
         ("BERT-Medium", 8, 512), ("BERT-Base", 12, 768), ("BERT-Large", 24, 1024)]


def param_counts():
    counts = []
    for name, layers, hidden in SIZES:
        config = BertConfig(num_hidden_layers=layers, hidden_size=hidden,
                            num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
        with torch.device("meta"):
            encoder, mlm = BertModel(config), BertForMaskedLM(config)
        counts.append({"name": name, "layers": layers, "hidden": hidden, "heads": hidden // 64,
                       "bert_model": encoder.num_parameters(), "bert_for_masked_lm": mlm.num_parameters()})
    print(json.dumps(counts))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"make-model": make_model, "forward": forward, "param-counts": param_counts, "classify": classify}[command](*args)
