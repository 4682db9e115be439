"""Typed pass options in pipeline strings (`mp-calibrate{gamma=8.0}`): parsing, validation at parse
time, canonical printing that parses back, setting options on a pipeline, and the typed PassContext
(calibration data, seed, report sink) that mp-calibrate reads."""
from __future__ import annotations

import numpy as np
import pytest
from mpc.passes.mp_calibrate import GainMode, MPCalibrateOptions

from mpc.data import Dataset
from mpc.errors import BadFlag
from mpc.ir import parse
from mpc.passmanager import PassContext, Stage, parse_pipeline, pass_options, run_pipeline, set_options


def test_options_parse_into_the_typed_dataclass():
    [stage] = parse_pipeline("mp-calibrate{gain_terms=3, gamma=8}")
    assert stage.options == MPCalibrateOptions(gamma=8.0, gain_terms=3, gain=GainMode.SHIFT_ADD)
    assert isinstance(stage.options.gamma, float)
    [stage] = parse_pipeline("mp-calibrate{gain=float,gamma=none}")
    assert stage.options.gain is GainMode.FLOAT and stage.options.gamma is None
    assert parse_pipeline("mp-calibrate")[0].options == MPCalibrateOptions()


@pytest.mark.parametrize("text, printed", [
    ("mp-calibrate", "mp-calibrate"),
    ("mp-calibrate{gain_terms=2}", "mp-calibrate"),                    # a default is not printed
    ("mp-calibrate{gain_terms=3,gamma=8}", "mp-calibrate{gamma=8.0,gain_terms=3}"),  # declaration order
    ("mp-calibrate{gamma=0.1,gain=float}", "mp-calibrate{gamma=0.1,gain=float}"),
    ("mp-calibrate{gamma=1e-300}", "mp-calibrate{gamma=1e-300}"),
])
def test_a_stage_prints_canonically_and_parses_back(text, printed):
    [stage] = parse_pipeline(text)
    assert str(stage) == printed
    assert parse_pipeline(printed) == [stage]


@pytest.mark.parametrize("body, message", [
    ("gamma=0", "mp-calibrate: option gamma must be a finite number > 0, got 0.0"),
    ("gamma=-2", "mp-calibrate: option gamma must be a finite number > 0, got -2.0"),
    ("gamma=nan", "mp-calibrate: option gamma must be a finite number > 0, got nan"),
    ("gamma=inf", "mp-calibrate: option gamma must be a finite number > 0, got inf"),
    ("gamma=big", "mp-calibrate.gamma: expected a float, got 'big'"),
    ("gain_terms=0", "mp-calibrate: option gain_terms must be an integer from 1 to 32, got 0"),
    ("gain_terms=33", "mp-calibrate: option gain_terms must be an integer from 1 to 32, got 33"),
    ("gain_terms=1.5", "mp-calibrate.gain_terms: expected an int, got 1.5"),
    ("gain=fixed", "mp-calibrate.gain: expected one of ['shift-add', 'float'], got 'fixed'"),
    ("gain_term=2", "pass 'mp-calibrate' has no option 'gain_term' (expected one of: gamma, gain_terms, gain, refine, channel_scale)"),
])
def test_bad_options_are_refused_when_the_pipeline_is_parsed(body, message):
    with pytest.raises(BadFlag) as info:
        parse_pipeline(f"canonicalize,mp-rewrite,mp-calibrate{{{body}}},dce")
    assert str(info.value) == message


@pytest.mark.parametrize("pipeline, options, result", [
    ("canonicalize,mp-rewrite,mp-calibrate,dce", {"gamma": 8},
     "canonicalize,mp-rewrite,mp-calibrate{gamma=8.0},dce"),
    ("canonicalize,mp-rewrite,mp-calibrate{gain_terms=3},dce", {"gamma": 0.5},     # merged with the given ones
     "canonicalize,mp-rewrite,mp-calibrate{gamma=0.5,gain_terms=3},dce"),
    ("mp-calibrate{gamma=4.0}", {"gamma": 2.0}, "mp-calibrate{gamma=2.0}"),         # the flag wins
    ("mp-calibrate", {"gain": "float", "gain_terms": 2}, "mp-calibrate{gain=float}"),
])
def test_set_options(pipeline, options, result):
    assert set_options(pipeline, {"mp-calibrate": options}) == result
    assert set_options(pipeline, {}) == pipeline


def test_set_options_refuses_a_pass_not_in_the_pipeline_and_bad_values():
    with pytest.raises(BadFlag, match="pass 'mp-calibrate' is not in the pipeline 'canonicalize'"):
        set_options("canonicalize", {"mp-calibrate": {"gamma": 1.0}})
    with pytest.raises(BadFlag, match="option gain_terms must be an integer from 1 to 32, got 0"):
        set_options("mp-calibrate", {"mp-calibrate": {"gain_terms": 0}})
    with pytest.raises(BadFlag, match="pass 'dce' takes no options"):
        set_options("dce", {"dce": {"x": 1}})


def test_pass_options_reads_the_last_stage_or_the_defaults():
    assert pass_options("mp-calibrate{gain_terms=1},dce,mp-calibrate{gain_terms=5}", "mp-calibrate").gain_terms == 5
    assert pass_options("canonicalize", "mp-calibrate") == MPCalibrateOptions()
    assert Stage("mp-calibrate", MPCalibrateOptions(gain=GainMode.FLOAT)).__str__() == "mp-calibrate{gain=float}"


LAYER = """graph @g(%x: f32[N,6]) -> (%y: f32[N,3]) {
  weight @w : f32[3,6]
  weight @b : f32[3]
  %y = nn.gemm(%x, @w, @b) {trans_b = true} : f32[N,3]
}
"""


def _layer():
    rng = np.random.default_rng(5)
    arrays = {"w": rng.normal(size=(3, 6)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    return parse(LAYER, arrays)


def test_mp_calibrate_reads_the_dataset_seed_and_options_from_the_context():
    x = np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32)
    ctx = PassContext(dataset=Dataset({"x": x}, None, "forty normal samples"), seed=3)
    g = _layer()
    records = run_pipeline(g, "canonicalize,mp-rewrite,mp-calibrate{gamma=2.0,gain_terms=1}", ctx)
    assert records[-1].name == "mp-calibrate{gamma=2.0,gain_terms=1}"
    assert records[-1].stats["calib_samples"] == 40
    [mp] = [op for op in g.ops if op.kind == "mp.dot"]
    assert (mp.attrs.gamma, mp.attrs.gain_terms) == (2.0, 1)
    assert ctx.report.sections["Calibration data"] == "forty normal samples"
    assert len(ctx.report.sections["MP calibration"]) == 1 and ctx.report.notes == []


def test_mp_calibrate_without_a_dataset_samples_its_own_and_says_so():
    ctx = PassContext(seed=7)
    records = run_pipeline(_layer(), "canonicalize,mp-rewrite,mp-calibrate", ctx)
    assert records[-1].stats["calib_samples"] == 256
    assert ctx.report.sections["Calibration data"] == "256 random samples (seed 7)"
    note = "mp-calibrate: no calibration data given: calibrated on 256 random samples (seed 7) of U(0, 1)"
    assert ctx.report.notes == [note]
