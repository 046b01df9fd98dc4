import json
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Value

from hfcompress.data import get_task, load_glue, loading, write_sentiment_task
from hfcompress.errors import HfcompressError, UsageError

SHARED_GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"


def write_tsv(path: Path, lines: list[list[str]], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join("\t".join(fields) + "\n" for fields in lines)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


# --- the real GLUE files in ../shared --------------------------------------------------------------


@pytest.fixture
def shared_glue() -> Path:
    if not (SHARED_GLUE / "sst2").is_dir():
        pytest.skip(f"real GLUE data not found at {SHARED_GLUE}")
    return SHARED_GLUE


def test_real_sst2(shared_glue):
    data = load_glue("sst2", data_dir=shared_glue)
    assert set(data) == {"train", "validation"}
    assert (data["train"].num_rows, data["validation"].num_rows) == (67_349, 872)
    assert data["train"].column_names == ["sentence", "label"]
    assert data["train"][0] == {"sentence": "hide new secretions from the parental units ", "label": 0}
    assert data["validation"][0]["label"] == 1
    assert sorted(set(data["validation"]["label"])) == [0, 1]
    assert data["train"].features["label"] == ClassLabel(names=["negative", "positive"])


def test_real_rte_maps_string_labels(shared_glue):
    data = load_glue("RTE", data_dir=shared_glue / "rte")
    assert (data["train"].num_rows, data["validation"].num_rows) == (2_490, 277)
    assert data["train"].column_names == ["sentence1", "sentence2", "label"]
    first = data["train"][0]  # "No Weapons of Mass Destruction Found in Iraq Yet." ... not_entailment
    assert first["sentence1"].startswith("No Weapons of Mass Destruction")
    assert first["label"] == 1
    assert data["train"][1]["label"] == 0  # entailment
    assert sum(label == 0 for label in data["train"]["label"]) == 1_249


def test_real_sst2_subsample(shared_glue):
    data = load_glue("sst2", data_dir=shared_glue, max_train_samples=100, max_eval_samples=50, seed=3)
    assert (data["train"].num_rows, data["validation"].num_rows) == (100, 50)
    again = load_glue("sst2", data_dir=shared_glue, max_train_samples=100, seed=3)
    assert again["train"]["sentence"] == data["train"]["sentence"]
    assert again["validation"].num_rows == 872
    other = load_glue("sst2", data_dir=shared_glue, max_train_samples=100, seed=4)
    assert other["train"]["sentence"] != data["train"]["sentence"]


# --- the classic layout for the other tasks, written by hand --------------------------------------


MNLI_TRAIN_HEADER = [
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
    "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label",
]  # fmt: skip
MNLI_DEV_HEADER = [*MNLI_TRAIN_HEADER[:-1], "label2", "label3", "label4", "label5", "gold_label"]


MNLI_LEADING_FIELDS = ["0", "31193", "31193n", "government", "( x )", "( y )", "(ROOT x)", "(ROOT y)"]


def mnli_row(premise: str, hypothesis: str, label: str, dev: bool = False) -> list[str]:
    votes = [label] * (5 if dev else 1)  # dev files carry five annotator labels, train files one
    return [*MNLI_LEADING_FIELDS, premise, hypothesis, *votes, label]


@pytest.fixture
def glue_root(tmp_path: Path) -> Path:
    root = tmp_path / "glue"
    cola = [
        ["gj04", "1", "", "Our friends won't buy this analysis."],
        ["gj04", "0", "*", 'They "drank" the pub.'],
    ]
    write_tsv(root / "CoLA" / "train.tsv", cola)
    write_tsv(root / "CoLA" / "dev.tsv", cola[:1])

    mrpc_header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    mrpc = [
        mrpc_header,
        [
            "1",
            "702876",
            "702977",
            'He called " the witness " a liar .',
            'Amrozi called him " the witness " .',
        ],
        ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .", "Yucaipa bought Dominick 's in 1995 ."],
    ]
    write_tsv(root / "MRPC" / "train.tsv", mrpc, bom=True)
    write_tsv(root / "MRPC" / "dev.tsv", mrpc[:2], bom=True)

    stsb_header = ["index", "genre", "filename", "year", "old_index", "source1", "source2"]
    stsb_header += ["sentence1", "sentence2", "score"]
    stsb_row = ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none"]
    stsb = [
        stsb_header,
        [*stsb_row, "A plane is taking off.", "An air plane is taking off.", "5.000"],
        [*stsb_row, "A man is playing a flute.", "A man is eating.", "0.500"],
    ]
    write_tsv(root / "STS-B" / "train.tsv", stsb)
    write_tsv(root / "STS-B" / "dev.tsv", stsb[:2])

    qqp = [
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["133273", "213221", "213222", "How is the life of a math student?", "Which level is math?", "0"],
        ["402555", "536040", "536041", "How do I control my horny emotions?", "How do you control it?", "1"],
        ["7", "15", "16", "A broken line with too few fields"],
    ]
    write_tsv(root / "QQP" / "train.tsv", qqp)
    write_tsv(root / "QQP" / "dev.tsv", qqp[:2])

    write_tsv(
        root / "MNLI" / "train.tsv",
        [
            MNLI_TRAIN_HEADER,
            mnli_row("Conceptually cream skimming has two dimensions.", "Product and geography.", "neutral"),
            mnli_row("you know during the season", "You lose the things.", "entailment"),
            mnli_row("One of our number will carry out.", "A member will ignore it.", "contradiction"),
        ],
    )
    write_tsv(
        root / "MNLI" / "dev_matched.tsv",
        [MNLI_DEV_HEADER, mnli_row("The new rights are nice.", "Everyone loves them.", "neutral", dev=True)],
    )
    write_tsv(
        root / "MNLI" / "dev_mismatched.tsv",
        [
            MNLI_DEV_HEADER,
            mnli_row("Your contribution helped.", "It did not help.", "contradiction", dev=True),
            mnli_row("The sky is blue.", "The sky has a colour.", "entailment", dev=True),
        ],
    )

    qnli = [
        ["index", "question", "sentence", "label"],
        [
            "0",
            "When did the third Digimon series begin?",
            "Unlike the two seasons before it.",
            "not_entailment",
        ],
        ["1", "Which missile batteries often have?", "The two missile batteries have radars.", "entailment"],
    ]
    write_tsv(root / "QNLI" / "train.tsv", qnli)
    write_tsv(root / "QNLI" / "dev.tsv", qnli)

    wnli = [
        ["index", "sentence1", "sentence2", "label"],
        ["0", "I stuck a pin through a carrot.", "The carrot had a hole.", "1"],
        ["1", "John couldn't see the stage with Billy in front of him.", "John is so short.", "0"],
    ]
    write_tsv(root / "WNLI" / "train.tsv", wnli)
    write_tsv(root / "WNLI" / "dev.tsv", wnli[:2])
    return root


def test_cola_has_no_header(glue_root):
    data = load_glue("cola", data_dir=glue_root)
    assert data["train"].column_names == ["sentence", "label"]
    assert data["train"]["sentence"] == ["Our friends won't buy this analysis.", 'They "drank" the pub.']
    assert data["train"]["label"] == [1, 0]
    assert data["validation"].num_rows == 1


def test_mrpc_strips_the_byte_order_mark(glue_root):
    data = load_glue("mrpc", data_dir=glue_root)
    assert data["train"].column_names == ["sentence1", "sentence2", "label"]
    assert data["train"]["label"] == [1, 0]
    assert data["train"][0]["sentence1"] == 'He called " the witness " a liar .'
    assert data["validation"].num_rows == 1


def test_stsb_scores_are_floats(glue_root):
    data = load_glue("STS-B", data_dir=glue_root)
    assert data["train"].features["label"] == Value("float32")
    assert data["train"]["label"] == pytest.approx([5.0, 0.5])
    assert data["train"][1]["sentence2"] == "A man is eating."


def test_qqp_skips_broken_lines(glue_root, caplog):
    data = load_glue("qqp", data_dir=glue_root)
    assert data["train"].column_names == ["question1", "question2", "label"]
    assert data["train"]["label"] == [0, 1]
    assert "Skipped 1 malformed row of " in caplog.text
    assert "QQP/train.tsv (not 6 tab-separated fields on line 4)." in caplog.text


def test_mnli_has_matched_and_mismatched_dev(glue_root):
    data = load_glue("mnli", data_dir=glue_root)
    assert set(data) == {"train", "validation_matched", "validation_mismatched"}
    assert data["train"].column_names == ["premise", "hypothesis", "label"]
    assert data["train"]["label"] == [1, 0, 2]  # neutral, entailment, contradiction
    assert data["validation_matched"]["label"] == [1]
    assert data["validation_mismatched"]["label"] == [2, 0]
    assert data["validation_mismatched"][0]["hypothesis"] == "It did not help."


def test_mnli_eval_limit_applies_to_both_dev_splits(glue_root):
    data = load_glue("mnli", data_dir=glue_root, max_train_samples=2, max_eval_samples=1)
    assert [data[name].num_rows for name in data] == [2, 1, 1]


def test_qnli_string_labels(glue_root):
    data = load_glue("qnli", data_dir=glue_root / "QNLI")
    assert data["train"].column_names == ["question", "sentence", "label"]
    assert data["validation"]["label"] == [1, 0]


def test_wnli_numeric_labels_match_the_hub(glue_root):
    data = load_glue("wnli", data_dir=glue_root)
    assert data["train"]["label"] == [1, 0]
    assert data["train"].features["label"].int2str(1) == "entailment"


def test_lowercase_folder_names(tmp_path):
    write_tsv(
        tmp_path / "rte" / "dev.tsv",
        [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"]],
    )
    data = load_glue("rte", data_dir=tmp_path)
    assert set(data) == {"validation"}  # no train.tsv: only the split that exists
    assert data["validation"]["label"] == [0]


def test_missing_data_dir(tmp_path):
    with pytest.raises(UsageError, match=r"GLUE data directory .*nowhere does not exist"):
        load_glue("sst2", data_dir=tmp_path / "nowhere")


def test_data_dir_without_the_task(glue_root):
    with pytest.raises(UsageError) as info:
        load_glue("sst2", data_dir=glue_root)
    assert f"GLUE data directory {glue_root} has no SST-2 (or sst2) folder" in str(info.value)


def test_task_folder_without_files(tmp_path):
    (tmp_path / "SST-2").mkdir()
    with pytest.raises(UsageError, match=r"SST-2 has no train.tsv or dev.tsv file\.$"):
        load_glue("sst2", data_dir=tmp_path)


def test_classic_file_with_wrong_columns(tmp_path):
    write_tsv(
        tmp_path / "RTE" / "dev.tsv",
        [["index", "premise", "hypothesis", "label"], ["0", "a", "b", "entailment"]],
    )
    with pytest.raises(UsageError) as info:
        load_glue("rte", data_dir=tmp_path)
    assert "dev.tsv has no column 'sentence1', 'sentence2'" in str(info.value)


def test_classic_file_with_unknown_label(tmp_path):
    rows = [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "maybe"]]
    write_tsv(tmp_path / "RTE" / "dev.tsv", rows)
    with pytest.raises(UsageError) as info:
        load_glue("rte", data_dir=tmp_path)
    message = str(info.value)
    assert "Unknown label 'maybe' in line 2 of" in message
    assert "expected one of entailment, not_entailment or an id from 0 to 1." in message


# --- the user's own files -------------------------------------------------------------------------


def test_csv_tsv_and_json_files(tmp_path):
    csv_file = tmp_path / "train.csv"
    csv_file.write_text('sentence,label,extra\n"great, really",positive,x\nawful,0,y\n', encoding="utf-8")
    tsv_file = tmp_path / "dev.tsv"
    tsv_file.write_text('sentence\tlabel\nsaid "fine"\t1\n', encoding="utf-8")
    data = load_glue("sst2", train_file=csv_file, validation_file=tsv_file)
    assert data["train"].column_names == ["sentence", "label"]
    assert data["train"]["sentence"] == ["great, really", "awful"]
    assert data["train"]["label"] == [1, 0]
    assert data["validation"]["sentence"] == ['said "fine"']

    records = [
        {"sentence1": "a", "sentence2": "b", "label": "not_entailment"},
        {"sentence1": "c", "sentence2": "d", "label": 0},
    ]
    json_file = tmp_path / "dev.json"
    json_file.write_text(json.dumps(records), encoding="utf-8")
    jsonl_file = tmp_path / "train.jsonl"
    jsonl_file.write_text("\n".join(json.dumps(record) for record in records) + "\n", encoding="utf-8")
    data = load_glue("rte", train_file=jsonl_file, validation_file=json_file)
    assert data["train"]["label"] == data["validation"]["label"] == [1, 0]


def test_json_columns_and_stsb_floats(tmp_path):
    json_file = tmp_path / "dev.json"
    columns = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [4.2, "1.5"]}
    json_file.write_text(json.dumps(columns))
    data = load_glue("stsb", validation_file=json_file)
    assert set(data) == {"validation"}
    assert data["validation"]["label"] == pytest.approx([4.2, 1.5])


def test_single_mnli_validation_file_is_matched(tmp_path):
    tsv_file = tmp_path / "dev.tsv"
    tsv_file.write_text("premise\thypothesis\tlabel\np\th\tcontradiction\n", encoding="utf-8")
    data = load_glue("mnli", validation_file=tsv_file)
    assert set(data) == {"validation_matched"}
    assert data["validation_matched"]["label"] == [2]


def test_user_file_errors(tmp_path):
    with pytest.raises(UsageError, match=r"Data file .*train\.txt must end in \.csv, \.tsv, \.json, \.jsonl"):
        load_glue("sst2", train_file=tmp_path / "train.txt")
    with pytest.raises(UsageError, match=r"Data file .*missing\.csv does not exist\."):
        load_glue("sst2", train_file=tmp_path / "missing.csv")

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\nfine,1\n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_glue("sst2", validation_file=wrong)
    expected = f"File {wrong} has no column 'sentence'; sst2 files need columns sentence, label."
    assert str(info.value) == expected

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("sentence,label\nfine,neutral\n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_glue("sst2", validation_file=unknown)
    assert f"Unknown label 'neutral' in column 'label' of {unknown}" in str(info.value)

    out_of_range = tmp_path / "range.json"
    out_of_range.write_text('[{"sentence": "fine", "label": 2}]', encoding="utf-8")
    with pytest.raises(UsageError, match="Unknown label 2"):
        load_glue("sst2", validation_file=out_of_range)

    not_a_score = tmp_path / "score.csv"
    not_a_score.write_text("sentence1,sentence2,label\na,b,high\n", encoding="utf-8")
    with pytest.raises(UsageError, match="Label 'high' in column 'label' of .* is not a number"):
        load_glue("stsb", validation_file=not_a_score)

    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n", encoding="utf-8")
    with pytest.raises(UsageError, match="holds no rows"):
        load_glue("sst2", validation_file=empty)

    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_glue("sst2", validation_file=broken)


def test_data_dir_and_files_together(tmp_path):
    with pytest.raises(UsageError, match="either --data-dir or --train-file/--validation-file, not both"):
        load_glue("sst2", data_dir=tmp_path, train_file=tmp_path / "train.csv")


def test_unknown_task():
    with pytest.raises(UsageError, match="Unknown GLUE task 'sst3'"):
        load_glue("sst3", data_dir=".")


@pytest.mark.parametrize("value", [0, -5, 1.5, True, "10"])
def test_bad_max_samples(tmp_path, value):
    with pytest.raises(UsageError) as info:
        load_glue("sst2", data_dir=tmp_path, max_train_samples=value)
    assert str(info.value) == f"max_train_samples must be a positive whole number of rows, not {value!r}."
    with pytest.raises(UsageError, match="max_eval_samples must be a positive"):
        load_glue("sst2", data_dir=tmp_path, max_eval_samples=value)


# --- the Hub -------------------------------------------------------------------------------------


def test_hub_unreachable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # Both libraries read the variables when imported, so the constants are patched as well.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    with pytest.raises(HfcompressError) as info:
        load_glue("sst2")
    message = str(info.value)
    assert "Hugging Face Hub is unreachable" in message
    assert "--data-dir" in message and "--train-file/--validation-file" in message
    assert "\n" not in message
    assert not isinstance(info.value, UsageError)


def test_hub_result_is_reshaped(monkeypatch):
    def fake_load_dataset(path, name):
        assert (path, name) == ("nyu-mll/glue", "rte")
        split = {"sentence1": ["a"], "sentence2": ["b"], "label": [1], "idx": [0]}
        return DatasetDict(
            {
                "train": Dataset.from_dict(split),
                "validation": Dataset.from_dict(split),
                "test": Dataset.from_dict({**split, "label": [-1]}),
            }
        )

    monkeypatch.setattr(loading, "load_dataset", fake_load_dataset)
    data = load_glue("rte")
    assert set(data) == {"train", "validation"}
    assert data["train"].column_names == ["sentence1", "sentence2", "label"]
    assert data["train"].features == loading._features(get_task("rte"))


# --- the synthetic sentiment task ----------------------------------------------------------------


def test_synthetic_task_loads_and_is_balanced(tmp_path):
    root = write_sentiment_task(tmp_path / "demo", n_train=300, n_dev=61, seed=7)
    assert root == tmp_path / "demo"
    assert (root / "sst2" / "train.tsv").read_text().startswith("sentence\tlabel\n")
    data = load_glue("sst2", data_dir=root)
    assert (data["train"].num_rows, data["validation"].num_rows) == (300, 61)
    assert sum(data["train"]["label"]) == 150
    assert sum(data["validation"]["label"]) == 30
    assert not set(data["train"]["sentence"]) & set(data["validation"]["sentence"])
    assert len(set(data["train"]["sentence"])) == 300


def test_synthetic_task_is_deterministic(tmp_path):
    first = write_sentiment_task(tmp_path / "a", seed=1) / "sst2"
    second = write_sentiment_task(tmp_path / "b", seed=1) / "sst2"
    other = write_sentiment_task(tmp_path / "c", seed=2) / "sst2"
    for name in ("train.tsv", "dev.tsv"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()


def test_synthetic_task_needs_negation_and_contrast(tmp_path):
    lines = (write_sentiment_task(tmp_path, seed=0) / "sst2" / "train.tsv").read_text().splitlines()[1:]
    sentences = [line.split("\t")[0] for line in lines]
    assert any(" but " in sentence for sentence in sentences)
    assert any(" not " in sentence or " never " in sentence for sentence in sentences)
    # A keyword such as "brilliant" appears under both labels.
    labels = {line.split("\t")[1] for line in lines if " brilliant" in line}
    assert labels == {"0", "1"}


def _polarity(words: list[str]) -> int:
    """+1 or -1 for a clause's adjective (its last word), flipped by a negation before it."""
    from hfcompress.data.synthetic import POSITIVE

    sign = 1 if words[-1] in POSITIVE else -1
    return -sign if {"not", "never", "hardly"} & set(words) else sign


def test_hard_synthetic_sentences_follow_their_rules(tmp_path):
    """The hard constructions are labelled by majority, double negation and unmet wishes, checked independently."""
    lines = (write_sentiment_task(tmp_path, n_train=1500, hard=True) / "sst2" / "train.tsv").read_text()
    rows = [line.split("\t") for line in lines.splitlines()[1:]]
    kinds = {"majority": 0, "double negation": 0, "wish": 0}
    for sentence, label in rows:
        words = sentence.replace(" .", "").split()
        if " , " in sentence and " and " in sentence and " but " not in sentence:
            first, rest = sentence.replace(" .", "").split(" , ")
            clauses = [first, *rest.split(" and ")]
            votes = sum(_polarity(clause.split()) for clause in clauses)
            assert len(clauses) == 3 and int(label) == (votes > 0), sentence
            kinds["majority"] += 1
        elif sentence.startswith(("it is not true that", "nobody could say that", "i would never claim")):
            assert int(label) == (_polarity(words[-1:]) > 0), sentence  # two negations: the adjective decides
            kinds["double negation"] += 1
        elif sentence.startswith(("if only", "i wish", "i expected")):
            adjective = words[-6] if sentence.startswith("i expected") else words[-1]
            from hfcompress.data.synthetic import POSITIVE

            assert int(label) == (adjective not in POSITIVE), sentence  # the wish or the fear did not come true
            kinds["wish"] += 1
    assert all(count > 50 for count in kinds.values()), kinds
    # The default keeps the old data: no hard constructions without hard=True.
    plain = (write_sentiment_task(tmp_path / "plain", seed=0) / "sst2" / "train.tsv").read_text()
    assert "it is not true that" not in plain and "if only" not in plain


@pytest.mark.parametrize("sizes", [{"n_train": 1}, {"n_dev": 0}, {"n_train": 2.5}])
def test_synthetic_task_rejects_tiny_sizes(tmp_path, sizes):
    with pytest.raises(UsageError, match="must be a whole number of at least 2 sentences"):
        write_sentiment_task(tmp_path, **sizes)
