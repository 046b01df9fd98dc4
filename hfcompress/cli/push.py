"""hfcompress push OUTPUT_DIR --repo-id USER/NAME [--private] [--revision BRANCH] [--create-pr] [--commit-message M]"""

import logging
from dataclasses import dataclass, field

from ..errors import UsageError
from ..hub import push_folder
from .common import parse_dataclasses

DESCRIPTION = (
    "Publish an output directory, with its model card, to a model repo on the Hugging Face Hub (created when "
    "missing). The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub."
)


@dataclass
class PushArguments:
    output_dir: str = field(default=None, metadata={"help": "The folder to publish: an hfcompress output directory."})
    repo_id: str = field(
        default=None, metadata={"help": "Hub repo as USER/NAME or ORG/NAME; NAME alone goes to your namespace."}
    )
    private: bool = field(
        default=False, metadata={"help": "Create the repo private; an existing public repo is refused."}
    )
    revision: str | None = field(
        default=None, metadata={"help": "Branch to push to (created from main when missing). Default: main."}
    )
    create_pr: bool = field(
        default=False, metadata={"help": "Open a pull request against main instead of committing."}
    )
    commit_message: str | None = field(default=None, metadata={"help": "Commit message. Default: describes the run."})

    def __post_init__(self):
        if self.output_dir is None:
            raise UsageError(
                "An output directory to push is required: hfcompress push OUTPUT_DIR --repo-id USER/NAME."
            )
        if not self.repo_id:
            raise UsageError("--repo-id is required, e.g. --repo-id your-name/minilm-sst2-distilled.")


TYPES = (PushArguments,)


def parse(argv: list[str]):
    return parse_dataclasses(argv, TYPES, "push", DESCRIPTION, positional="output_dir")


def run(argv: list[str]) -> int:
    (args,) = parse(argv)
    for name in ("httpx", "httpx2"):  # one line per HTTP request is noise here; failures are reported by push_folder
        logging.getLogger(name).setLevel(logging.WARNING)
    url = push_folder(
        args.output_dir,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
    )
    print(f"Pushed {args.output_dir} to {url}")
    return 0
