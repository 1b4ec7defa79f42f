"""The candidates of ``greenprec recommend``: --vary parsing, policy defaults, the --quick plan."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenprec.cli import parse_params
from greenprec.errors import ConfigError
from greenprec.experiment.candidates import (
    MAX_CANDIDATES,
    MAX_LABEL_CHARS,
    QUICK_BATCH_SIZES,
    Candidate,
    ParamValue,
    PolicySelection,
    candidates,
    check_workload_accepts,
    default_policies,
    parse_vary,
    parse_vary_value,
    quick_plan,
)
from greenprec.precision import SupportReport, support
from greenprec.workloads.params import DigitsParams

SAFE_LABEL = re.compile(r"[A-Za-z0-9_.=-]+")
AVX2 = ["fpu", "sse2", "avx", "avx2", "fma"]


def x86(*flags: str, framework: str = "tensorflow") -> SupportReport:
    """A CPU with exactly these precision flags, as tests/test_precision.py fakes one."""
    return support(
        "cpu",
        framework=framework,
        cpu_flags=[*AVX2, *flags],
        cpu_name="Test CPU",
        machine="x86_64",
        env={},
    )


# --- parse_vary ------------------------------------------------------------------------------


def test_the_grid_is_crossed_in_vary_order() -> None:
    grid = parse_vary(["batch_size=64,256", "learning_rate=1e-3,3e-3"])
    assert grid == (
        (("batch_size", 64), ("learning_rate", 0.001)),
        (("batch_size", 64), ("learning_rate", 0.003)),
        (("batch_size", 256), ("learning_rate", 0.001)),
        (("batch_size", 256), ("learning_rate", 0.003)),
    )
    assert parse_vary([]) == ((),)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64", 64),
        ("1e-3", 0.001),
        ("-2.5", -2.5),
        ("true", True),
        ("false", False),
        ("adam", "adam"),
        ("resnet-18", "resnet-18"),
        (" 3 ", 3),
    ],
)
def test_values_read_as_param_reads_them(text: str, value: ParamValue) -> None:
    parsed = parse_vary_value("key", text)
    assert parsed == value and type(parsed) is type(value)
    # The same rule as --param KEY=VALUE, so the two flags never disagree on a value.
    assert parse_params([f"key={text.strip()}"])["key"] == parsed


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["batch_size"], "malformed --vary 'batch_size'; write KEY=V1,V2"),
        (["=64"], "malformed --vary '=64'"),
        (["batch_size="], "--vary batch_size: an empty value"),
        (["batch_size=64,,256"], "--vary batch_size: an empty value"),
        (["batch_size=64", "batch_size=256"], "--vary batch_size is given twice; put all"),
        (["batch_size=64,64"], "'64' repeats a value given before"),
        (["learning_rate=1,1.0"], "'1.0' repeats a value given before"),
        (["x=[1,2]"], "--vary x: '[1' is not a number, true/false or a word"),
        (["x=null"], "--vary x: 'null' is not a number, true/false or a word"),
        (["x={}"], "'{}' is not a number, true/false or a word"),
        (["x=cuda:1"], "'cuda:1' is not a number, true/false or a word"),
        (["x=NaN"], "--vary x: 'NaN' is not a finite number"),
        (["x=Infinity"], "'Infinity' is not a finite number"),
        (['x="64"'], 'write "64" without quotes'),
        (["batch size=64"], "'batch size' is not a parameter name"),
        (["../x=1"], "'../x' is not a parameter name"),
        (["epochs=3,6"], "--vary epochs: not varied by recommend"),
        ([f"a{i}=1,2" for i in range(7)], "--vary gives 128 combinations, more than 64"),
    ],
)
def test_bad_vary_is_one_line_with_the_fix(specs: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_vary(specs)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


_KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(lambda k: k != "epochs")
_VALUE_TEXT = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "false", "adam", "sgd", "resnet-18", "v1.2", "cuda", "x_y"]),
)
_SPEC = st.tuples(_KEYS, st.lists(_VALUE_TEXT, min_size=1, max_size=4))


@given(st.lists(_SPEC, max_size=3, unique_by=lambda spec: spec[0]))
def test_accepted_input_gives_safe_unique_labels_that_read_back(
    specs: list[tuple[str, list[str]]],
) -> None:
    texts = [f"{key}={','.join(values)}" for key, values in specs]
    try:
        grid = parse_vary(texts)
        built = candidates(["fp32", "bf16"], grid)
    except ConfigError as error:
        # Refused (a value twice, a label too long): one line, never a crash.
        assert "\n" not in str(error)
        return
    labels = [candidate.label for candidate in built]
    assert len(set(labels)) == len(labels)
    for candidate in built:
        assert SAFE_LABEL.fullmatch(candidate.label) and len(candidate.label) <= MAX_LABEL_CHARS
        assert candidate.label not in (".", "..")
        # A label is --vary text: parsed again, it gives the same values of the same types.
        again = parse_vary(_pairs_of(candidate))
        assert len(again) == 1
        assert [(k, v, type(v)) for k, v in again[0]] == [
            (k, v, type(v)) for k, v in candidate.overrides
        ]


def _pairs_of(candidate: Candidate) -> list[str]:
    """The ``key=value`` parts of a label; split on the keys, since values may hold '-'."""
    label = candidate.label
    assert label.startswith(candidate.policy)
    rest = label.removeprefix(candidate.policy)
    keys = [key for key, _ in candidate.overrides]
    pattern = "".join(f"-{re.escape(key)}=(.*?)" for key in keys) + "$"
    match = re.fullmatch(pattern, rest)
    assert match is not None, label
    return [f"{key}={text}" for key, text in zip(keys, match.groups(), strict=True)]


# --- Candidate -------------------------------------------------------------------------------


def test_labels() -> None:
    plain = Candidate("bf16")
    assert (plain.label, plain.human, plain.params) == ("bf16", "bf16", {})
    varied = Candidate("bf16", (("batch_size", 256), ("learning_rate", 1e-3)))
    assert varied.label == "bf16-batch_size=256-learning_rate=0.001"
    assert varied.human == "bf16 with batch size 256 and learning rate 0.001"
    assert Candidate("fp32", (("augment", False),)).label == "fp32-augment=false"
    # repr(1e20) is 1e+20; "+" is left out of labels, and 1e20 reads back the same.
    assert Candidate("fp32", (("scale", 1e20),)).label == "fp32-scale=1e20"
    assert parse_vary(["scale=1e20"])[0] == (("scale", 1e20),)
    three = Candidate("fp32", (("a", 1), ("b", 2), ("c", 3)))
    assert three.human == "fp32 with a 1, b 2 and c 3"


@pytest.mark.parametrize(
    ("policy", "overrides", "expected"),
    [
        ("fp16", (), "use the canonical name 'mixed'"),
        ("fp64", (), "unknown precision policy 'fp64'"),
        ("fp32", (("../etc", 1),), "is not a parameter name"),
        ("fp32", (("data", "/tmp/x"),), "'/tmp/x' is not a number, true/false or a word"),
        ("fp32", (("a", 1), ("a", 2)), "a parameter twice"),
        ("fp32", (("lr", float("inf")),), "is not a finite number"),
        ("fp32", tuple((f"key_{i}", 10**9) for i in range(8)), "longer than 100 characters"),
    ],
)
def test_a_candidate_is_validated_however_it_is_built(
    policy: str, overrides: tuple[tuple[str, ParamValue], ...], expected: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        Candidate(policy, overrides)


# --- candidates ------------------------------------------------------------------------------


def test_policies_are_crossed_with_the_grid_policies_first() -> None:
    built = candidates(["fp32", "mixed_bfloat16"], parse_vary(["batch_size=64,256"]))
    assert [c.label for c in built] == [
        "fp32-batch_size=64",
        "fp32-batch_size=256",
        "bf16-batch_size=64",
        "bf16-batch_size=256",
    ]
    assert [c.label for c in candidates(PolicySelection(("fp32", "tf32")))] == ["fp32", "tf32"]


@pytest.mark.parametrize(
    ("policies", "grid", "expected"),
    [
        ([], ((),), "no precision policy to compare"),
        (["fp32"], (), "no parameter combination to compare"),
        (["fp32", "float32"], ((),), "configuration given twice: fp32"),
        (["fp32"], ((("b", 1),), (("b", 1),)), "configuration given twice: fp32-b=1"),
        (
            ["fp32", "bf16"],
            parse_vary([f"b={','.join(str(i) for i in range(40))}"]),
            f"2 policies x 40 parameter combinations = 80 configurations, more than "
            f"{MAX_CANDIDATES}",
        ),
    ],
)
def test_bad_candidates_are_refused(
    policies: list[str], grid: tuple[tuple[tuple[str, ParamValue], ...], ...], expected: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        candidates(policies, grid)


def test_the_workload_is_asked_about_every_candidate_before_anything_runs() -> None:
    grid = parse_vary(["batch_size=16,64", "learning_rate=1e-3"])
    assert check_workload_accepts("digits-cnn", candidates(["fp32"], grid)) is True
    with pytest.raises(ConfigError, match=r"candidate fp32-batch_sise=16: .*batch_sise"):
        check_workload_accepts("digits-cnn", candidates(["fp32"], parse_vary(["batch_sise=16"])))
    with pytest.raises(ConfigError, match=r"candidate bf16-batch_size=0: .*greater than"):
        check_workload_accepts("digits-cnn", candidates(["bf16"], parse_vary(["batch_size=0"])))
    # The experiment's own params are laid under the candidate's: both are checked.
    with pytest.raises(ConfigError, match="verbose"):
        check_workload_accepts("digits-cnn", [Candidate("fp32")], {"verbose": 9})


def test_a_workload_without_check_params_is_not_checked() -> None:
    seen: list[Mapping[str, object]] = []

    def mine(ctx: object) -> None:
        """A user's workload: it reads ctx.params itself."""

    def checked(ctx: object) -> None:
        """One that checks."""

    checked.check_params = seen.append  # type: ignore[attr-defined]
    assert check_workload_accepts(mine, [Candidate("fp32", (("anything", 1),))]) is False
    assert check_workload_accepts(checked, [Candidate("fp32", (("b", 2),))], {"a": 1}) is True
    assert seen == [{"a": 1, "b": 2}]


# --- default_policies ------------------------------------------------------------------------


def test_an_avx2_cpu_compares_fp32_alone_and_says_why_the_others_are_left_out() -> None:
    selection = default_policies(report=x86())
    assert selection.chosen == ("fp32",)
    assert [item.policy for item in selection.left_out] == ["tf32", "mixed", "bf16"]
    reasons = {item.policy: item.reason for item in selection.left_out}
    assert "no AVX-512 FP16/AMX-FP16" in reasons["mixed"] and "emulated" in reasons["mixed"]
    assert "no AVX-512 BF16/AMX-BF16" in reasons["bf16"]
    assert "runs as fp32" in reasons["tf32"]
    assert "name it to compare it anyway" in reasons["bf16"]
    assert selection.lines()[0].startswith("left out tf32: ")
    assert selection.warnings == ()


def test_native_policies_are_chosen() -> None:
    assert default_policies(report=x86("avx512_bf16")).chosen == ("fp32", "bf16")
    amx = default_policies("torch", report=x86("amx_fp16", "amx_bf16", framework="torch"))
    assert amx.chosen == ("fp32", "mixed", "bf16")
    ampere = default_policies(report=support(compute_capability="8.0", gpu_name="A100"))
    assert ampere.chosen == ("fp32", "tf32", "mixed", "bf16")
    assert ampere.left_out == () and ampere.device == "gpu"
    volta = default_policies(report=support(compute_capability="7.0"))
    assert volta.chosen == ("fp32", "mixed")
    assert [item.policy for item in volta.left_out] == ["tf32", "bf16"]


def test_avx512_fp16_without_amx_is_left_out_as_not_accelerated() -> None:
    selection = default_policies(report=x86("avx512_fp16"))
    reason = next(item.reason for item in selection.left_out if item.policy == "mixed")
    assert "float16 is not accelerated on this CPU" in reason


def test_a_named_emulated_policy_is_included_with_a_warning() -> None:
    selection = default_policies(named=["fp16", "fp32"], report=x86())
    assert selection.chosen == ("mixed", "fp32")
    assert selection.left_out == ()
    (warning,) = selection.warnings
    assert warning.startswith("mixed (float16) is emulated on this CPU")
    assert selection.lines() == [warning]


def test_a_named_policy_the_hardware_cannot_run_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"tf32 cannot run on this CPU \(TF32 is an NVIDIA"):
        default_policies(named=["fp32", "tf32"], report=x86("avx512_bf16"))
    # On a GPU with TF32 it is an ordinary choice.
    assert default_policies(named=["tf32"], report=support(compute_capability="9.0")).chosen == (
        "tf32",
    )


def test_named_twice_or_unknown_is_refused() -> None:
    with pytest.raises(ConfigError, match="policy named twice: bf16"):
        default_policies(named=["bf16", "mixed_bfloat16"], report=x86())
    with pytest.raises(ConfigError, match="unknown precision policy 'fp8'"):
        default_policies(named=["fp8"], report=x86())


def test_this_machine_is_judged_without_importing_a_framework() -> None:
    code = (
        "import sys\n"
        "from greenprec.experiment.candidates import default_policies\n"
        "selection = default_policies()\n"
        "assert 'fp32' in selection.chosen\n"
        "heavy = {'tensorflow', 'torch', 'keras'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- --quick ---------------------------------------------------------------------------------


def test_quick_with_one_native_policy_compares_two_batch_sizes_and_says_so() -> None:
    plan = quick_plan(default_policies(report=x86()))
    assert [c.label for c in plan.candidates] == ["fp32-batch_size=32", "fp32-batch_size=128"]
    assert plan.explanation == (
        "only fp32 runs natively on this CPU, so --quick compares fp32 at batch sizes 32 and 128"
    )
    # The first is the quick preset's own configuration: digits-cnn's default batch size.
    assert QUICK_BATCH_SIZES[0] == DigitsParams.model_fields["batch_size"].default
    check_workload_accepts("digits-cnn", plan.candidates)


def test_quick_with_two_native_policies_compares_them() -> None:
    plan = quick_plan(default_policies(report=x86("avx512_bf16")))
    assert [c.label for c in plan.candidates] == ["fp32", "bf16"]
    assert plan.explanation == "--quick compares fp32 and bf16"


def test_quick_keeps_what_vary_gives() -> None:
    one_policy = default_policies(report=x86())
    plan = quick_plan(one_policy, parse_vary(["learning_rate=1e-3,2e-3"]))
    assert [c.label for c in plan.candidates] == [
        "fp32-learning_rate=0.001",
        "fp32-learning_rate=0.002",
    ]
    plan = quick_plan(one_policy, parse_vary(["learning_rate=1e-3"]))
    assert [c.label for c in plan.candidates] == [
        "fp32-learning_rate=0.001-batch_size=32",
        "fp32-learning_rate=0.001-batch_size=128",
    ]
    with pytest.raises(ConfigError, match="give two batch sizes"):
        quick_plan(one_policy, parse_vary(["batch_size=64"]))
