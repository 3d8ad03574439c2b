"""A user's property suite: does my deployment keep each agent the same instance?

Written the way a user of selfhood would: only `pip install selfhood` and
pytest; the plugin (loaded through its entry point) brings the fixtures,
`selfhood.strategies` the generators, `selfhood.testing` the assertions.
Run with plain `pytest` in this directory.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from selfhood import Run, check_identity, make_spec, run_experiment
from selfhood.strategies import fault_schedules, histories
from selfhood.testing import assert_kept_promise, assert_same_instance, assert_valid

# my deployment: sequential consistency (session tokens, fencing), 3 replicas, 2 agents
DEPLOYMENT = make_spec(name="my-agents", modes=("sequential",), replicas=3, instances=2,
                       time_limit_s=1.0, quiesce_ms=500)


@settings(max_examples=8, deadline=None)
@given(schedule=fault_schedules(DEPLOYMENT, faults=("crash", "partition", "pause")))
def test_every_agent_stays_itself_under_any_fault_schedule(schedule: tuple) -> None:
    """Crashes, partitions and pauses anywhere in the run: no fork, nothing forgotten."""
    run = run_experiment(DEPLOYMENT, schedule=schedule)
    assert_same_instance(run, "sequential")
    assert_kept_promise(run, "sequential")


def test_a_stored_run_can_be_judged_again(selfhood_run, selfhood_store) -> None:
    """The runner fixture stores each run; the stored history gives the same verdicts."""
    from selfhood import load_run

    run: Run = selfhood_run(DEPLOYMENT, seed=7)
    assert run.path is not None and run.path.parent.parent == selfhood_store
    again = load_run(run.path)
    assert again.results["modes"] == run.results["modes"]
    ident = check_identity(again.history("sequential"), instances=again.spec.instance_names)
    assert ident.forks == 0 and ident.forgotten_acks == 0


@settings(max_examples=25, deadline=None)
@given(data=st.data(), model=st.sampled_from(["list-append", "register"]))
def test_histories_of_a_correct_store_pass_the_checker(data: st.DataObject, model: str) -> None:
    """What a linearizable store could answer, the checker accepts."""
    assert_valid(data.draw(histories(model)), model=model, allow_unknown=True)
