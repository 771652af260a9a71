"""Loading pipeline files: the schema, defaults, references and an error for every mistake that
names the step and the key."""

from __future__ import annotations

import pytest

from winnow.errors import NotFoundError
from winnow.pipelines.spec import (
    PipelineError,
    load_pipeline,
    parse_pipeline,
    resolve_refs,
)


def doc(*steps, **top):
    return {"project": "p", "steps": list(steps)} | top


def test_a_minimal_pipeline_gets_ids_defaults_and_implicit_wiring():
    p = parse_pipeline(doc(
        {"uses": "import", "with": {"builtin": "shapes", "images": 10}},
        {"uses": "check", "gates": ["count(split_leakage) == 0"]},
        {"id": "v1", "uses": "version"},
        {"uses": "train", "with": {"epochs": 1}},
        {"uses": "evaluate", "gates": "map50 >= 0.5"},
    ))
    assert (p.name, p.project, p.workspace, p.task) == ("p", "p", "default", "detect")
    assert [s.id for s in p.steps] == ["import", "check", "v1", "train", "evaluate"]
    assert p.steps[0].with_["seed"] == 0 and p.steps[0].with_["labels"] is True
    assert p.steps[3].with_["version"] == "${steps.v1.outputs.version}"
    assert p.steps[4].with_["model"] == "${steps.train.outputs.model}" and p.steps[4].with_["split"] == "test"
    assert [g.text for g in p.steps[4].gates] == ["map50 >= 0.5"]
    assert len(p.sha256) == 64 and p.sha256 == parse_pipeline(doc(*[s.as_dict() for s in p.steps])).sha256


def test_the_file_is_read_with_safe_load_and_its_name_is_the_default(tmp_path):
    f = tmp_path / "winnow.yaml"
    f.write_text("project: p\nsteps:\n  - uses: version\n")
    p = load_pipeline(f)
    assert p.name == "winnow" and p.file == f.resolve() and p.base_dir == tmp_path.resolve()
    f.write_text("project: !!python/object/apply:os.system ['true']\nsteps: []\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_pipeline(f)
    f.write_text("project: p\nsteps:\n  - uses: [version\n")
    with pytest.raises(PipelineError, match=r"not valid YAML at line \d+"):
        load_pipeline(f)
    with pytest.raises(NotFoundError, match="no such pipeline file"):
        load_pipeline(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ([], "a pipeline is a mapping"),
        (doc({"uses": "version"}, colour="red"), "unknown key 'colour' at the top"),
        ({"steps": [{"uses": "version"}]}, "'project' is required"),
        (doc(), "'steps' is required"),
        (doc({"uses": "version"}, task="caption"), "'task' must be one of classify, detect, segment"),
        (doc({"uses": "deploy_everything"}), "step 1: unknown step kind 'deploy_everything' in 'uses'; known kinds: import"),
        (doc({"id": "x", "uses": "trian"}), r"step 1 \('x'\): unknown step kind 'trian'"),
        (doc({"uses": "version", "colour": 1}), "step 1: unknown key 'colour'; a step has: id, uses"),
        (doc({"uses": "version"}, {"uses": "version"}), "there are 2 'version' steps; give each an 'id'"),
        (doc({"id": "a", "uses": "version"}, {"id": "a", "uses": "check"}), "two steps have the id 'a'"),
        (doc({"id": "1st", "uses": "version"}), "'id' must start with a letter"),
        (doc({"uses": "version", "with": {"seeds": 1}}), "step 'version': version has no parameter 'seeds'; it takes: split"),
        (doc({"uses": "version", "with": {"seed": "one"}}), "step 'version': with.seed: 'seed' must be a whole number, got 'one'"),
        (doc({"uses": "version", "with": "fast"}), "step 'version': 'with' must be a mapping"),
        (doc({"uses": "evaluate", "with": {"split": "holdout", "model": "m"}}), "with.split: 'split' must be one of train, valid, test"),
        (doc({"uses": "train"}), r"step 'train': 'version' is required \(no earlier version step"),
        (doc({"uses": "deploy"}), "step 'deploy': 'model' is required"),
        (doc({"uses": "select"}), "step 'select': with.budget is required"),
        (doc({"uses": "version"}, {"uses": "train", "with": {"version": "${steps.v9.outputs.version}"}}),
         r"step 'train': with.version: \$\{steps.v9...\} refers to no step of this pipeline; earlier steps: version"),
        (doc({"uses": "train", "with": {"version": "${steps.version.outputs.version}"}}, {"uses": "version"}),
         r"refers to a later step"),
        (doc({"uses": "version"}, {"uses": "train", "with": {"version": "${steps.version.outputs.model}"}}),
         "step 'version' \\(version\\) has no output 'model'; it has: version, number"),
        (doc({"uses": "version"}, {"uses": "train", "with": {"version": "${version}"}}), r"unknown reference \$\{version\}"),
        (doc({"uses": "check", "gates": ["count(split_leakage) = 0"]}), "step 'check': gate 1 'count.split_leakage. = 0': .*use =="),
        (doc({"uses": "check", "gates": ["__import__('os') == 0"]}), "step 'check': gate 1 .*may not start with '_'"),
        (doc({"uses": "check", "gates": ["count(split_leakge) == 0"]}), "unknown check 'split_leakge'"),
        (doc({"uses": "check", "gates": ["rate(label_error) <= 1%"]}), "check 'label_error' does not run in this step .it applies to classify"),
        (doc({"uses": "check", "with": {"only": ["exact_duplicate"]}, "gates": ["count(split_leakage) == 0"]}),
         "check 'split_leakage' does not run in this step .'only'/'skip' leave it out"),
        (doc({"uses": "check", "gates": ["mean(split_leakage) == 0"]}), "check steps have no function 'mean'; they have: count"),
        (doc({"uses": "check", "gates": ["finding > 0"]}), "check steps have no value 'finding'; gates can read: .*findings"),
        (doc({"uses": "version", "gates": "images"}), "is a number, not a condition"),
        (doc({"uses": "version", "gates": {"min": 1}}), "'gates' must be a list"),
        (doc({"uses": "train", "with": {"version": "latest"}}, {"uses": "evaluate", "gates": ["min_slice(accuracy) >= 0.4"]}),
         "slices of a detect evaluation are measured in map50"),
    ],
)
def test_every_mistake_names_the_step_and_the_key(pipeline, message):
    with pytest.raises(PipelineError, match=message):
        parse_pipeline(pipeline)


def test_references_resolve_to_the_recorded_outputs_keeping_their_type():
    outputs = {"v1": {"version": "ab" * 32, "number": 3}}
    assert resolve_refs("${steps.v1.outputs.number}", outputs) == 3
    assert resolve_refs("v${steps.v1.outputs.number}-x", outputs) == "v3-x"
    assert resolve_refs(["${steps.v1.outputs.version}"], outputs) == ["ab" * 32]
    assert resolve_refs("${steps.v1.outputs.missing}", outputs) is None
