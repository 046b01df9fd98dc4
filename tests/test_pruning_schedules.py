import pytest

from hfcompress.errors import UsageError
from hfcompress.pruning import PruningConfig
from hfcompress.pruning.schedules import constant, cubic, is_update_step, linear


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.0),
        (5, 0.0),  # between update steps the sparsity of the last update holds
        (10, 0.9 - 0.9 * 0.9**3),  # s_f + (s_i - s_f)(1 - 10/100)^3 = 0.2439
        (50, 0.9 - 0.9 * 0.5**3),  # 0.7875
        (99, 0.9 - 0.9 * 0.1**3),  # last update before the end was step 90
        (100, 0.9),
        (1000, 0.9),
    ],
)
def test_cubic_values(step, expected):
    assert cubic(step, 0.0, 0.9, 0, 100, 10) == pytest.approx(expected)


def test_cubic_with_initial_sparsity_and_late_start():
    # t0 = 20, n*dt = 80: at t = 60, progress 0.5 -> 0.8 + (0.2 - 0.8) * 0.125 = 0.725.
    assert cubic(10, 0.2, 0.8, 20, 100, 20) == 0.0
    assert cubic(20, 0.2, 0.8, 20, 100, 20) == pytest.approx(0.2)
    assert cubic(60, 0.2, 0.8, 20, 100, 20) == pytest.approx(0.725)


def test_linear_and_constant():
    assert linear(50, 0.0, 0.9, 0, 100, 10) == pytest.approx(0.45)
    assert linear(55, 0.0, 0.9, 0, 100, 10) == pytest.approx(0.45)
    assert constant(9, 0.0, 0.9, 10, 100, 10) == 0.0
    assert constant(10, 0.0, 0.9, 10, 100, 10) == 0.9


def test_update_steps():
    steps = [s for s in range(120) if is_update_step(s, 10, 50, 15)]
    assert steps == [10, 25, 40, 50]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sparsity=1.0), "Sparsity must be in [0, 1)"),
        (dict(sparsity=-0.1), "Sparsity must be in [0, 1)"),
        (dict(sparsity=0.5, initial_sparsity=0.6), "--initial-sparsity must be between"),
        (dict(start_step=50, end_step=20), "--end-step 20 must come after --start-step 50"),
        (dict(structure="2:4", sparsity=0.9), "pass --sparsity 0.5"),
        (dict(schedule="exponential"), "Unknown schedule 'exponential'"),
        (dict(scope="layer"), "Unknown scope"),
        (dict(structure="4:8"), "Unknown structure"),
        (dict(update_frequency=0), "--update-frequency must be at least 1"),
        (dict(ffn_size=128), "--ffn-size only applies"),
    ],
)
def test_impossible_settings(kwargs, message):
    with pytest.raises(UsageError) as err:
        PruningConfig(**kwargs)
    assert message in str(err.value)


def test_end_step_resolution():
    assert PruningConfig().resolve_end_step(100) == 70
    assert PruningConfig(end_step=100).resolve_end_step(100) == 100
    with pytest.raises(UsageError, match=r"--end-step 150 is past the run's last step \(100\)"):
        PruningConfig(end_step=150).resolve_end_step(100)
