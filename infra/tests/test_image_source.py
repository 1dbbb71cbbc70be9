"""What an image build reads (RIPPLE_IMAGE_SOURCE): the working tree, or the last commit only.

`make cluster-deploy` builds from HEAD so that uncommitted work of others in the shared tree
never reaches the cluster's images; these tables pin the decisions that keep it so: the setting,
the tag, whether pushed images count as this commit's, and the build context's files.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from ripple_delivery.build import build_command, build_context, image_specs, shared_stage_command
from ripple_delivery.config import ImageError, image_source, image_tag, is_head_build, load_config
from ripple_stack.settings import REPO_ROOT


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "worktree"), ("  ", "worktree"), ("worktree", "worktree"), ("head", "head"), ("HEAD", "head")],
)
def test_the_source_setting(value, expected):
    assert image_source(value) == expected


@pytest.mark.parametrize("value", ["commit", "main", "index"])
def test_an_unknown_source_says_what_to_set(value):
    with pytest.raises(ImageError, match=r"set it to worktree .* or head"):
        image_source(value)


@pytest.mark.parametrize(
    ("dirty", "source", "tag"),
    [
        (False, "worktree", "abc123"),
        (True, "worktree", "abc123-dirty"),  # the files as they are: not the commit
        (False, "head", "abc123"),
        (True, "head", "abc123"),  # built from the commit whatever the tree holds
    ],
)
def test_the_tag_names_what_was_built(dirty, source, tag):
    assert image_tag("abc123", dirty, source) == tag


@pytest.mark.parametrize(
    ("pushed_tag", "head", "current"),
    [
        ("abc123", "abc123", True),
        ("abc123-dirty", "abc123", False),  # a working tree's build: others' changes may be in it
        ("0ld000", "abc123", False),  # another commit's images
        ("", "abc123", False),  # nothing recorded
    ],
)
def test_pushed_images_count_only_when_built_from_this_commit(pushed_tag, head, current):
    assert is_head_build(pushed_tag, head) is current


def test_the_cluster_deploy_builds_from_head():
    import sys

    sys.path.insert(0, str(REPO_ROOT / "infra" / "cluster"))
    from ripple_cluster import ripple_deploy, settings

    env = ripple_deploy._delivery_env(settings.load())
    assert env["RIPPLE_IMAGE_SOURCE"] == "head"
    assert load_config(env).source == "head"
    assert not load_config(env).tag.endswith("-dirty")


def test_a_head_build_reads_the_committed_files_from_a_folder_of_its_own():
    config = replace(load_config({}), source="head")
    spec = next(s for s in image_specs(include_flink=False) if s.name == "gateway")
    with build_context(config) as context:
        assert context != REPO_ROOT
        for path in ("functions/gateway/main.py", "functions/Containerfile", ".dockerignore"):
            committed = subprocess.run(
                ["git", "show", f"HEAD:{path}"], cwd=REPO_ROOT, capture_output=True, check=True
            ).stdout
            assert (context / path).read_bytes() == committed
        assert not (context / ".ripple").exists() and not (context / ".venv").exists()
        command = build_command(config, spec, {}, context)
        assert command[command.index("-f") + 1] == str(context / "functions/gateway/Containerfile")
        assert command[-1] == str(context)
        stage = shared_stage_command(config, "build", {}, context)
        assert stage[stage.index("-f") + 1] == str(context / "functions/Containerfile")
    assert not Path(context).exists()  # removed after the build


def test_a_worktree_build_reads_the_repository_root():
    config = replace(load_config({}), source="worktree")
    with build_context(config) as context:
        assert context == REPO_ROOT
