"""The program store (sims/programs.py): a later process loads a lowered program instead of
tracing it, gets the same numbers, and never loads a program that something changed."""
import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims import loop, programs
from sims.models import diffusion
from sims.models import transformer as tr
from sims.metrics import Grid

TRACES = collections.Counter()


def _replica(key, scale):
    TRACES["replica"] += 1  # runs only while JAX traces the program
    return {"x": scale * jax.random.normal(key, (1, 3))}


def _forget(static_key):
    for cache_key in [k for k in loop._COMPILED if k[:len(static_key)] == static_key]:
        del loop._COMPILED[cache_key]


def _run(static_key, replicas=5):
    return loop.run_replicas(jax.random.key(7), _replica, static_key, jnp.asarray(2.0),
                             replicas=replicas, batch_size=replicas)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(programs, "store_dir", lambda: tmp_path)
    return tmp_path


def test_a_stored_program_is_loaded_untraced_and_gives_the_same_numbers(store):
    key = ("test-programs", 1.5, (3, "a"))
    _forget(key)
    traces, loaded = TRACES["replica"], programs.stored_count()
    first = _run(key)
    assert TRACES["replica"] == traces + 1 and programs.stored_count() == loaded
    assert len(list(store.glob("*.pkl"))) == 1
    _forget(key)  # as a new process would: nothing compiled in memory
    second = _run(key)
    assert TRACES["replica"] == traces + 1, "the stored program was traced again"
    assert programs.stored_count() == loaded + 1
    np.testing.assert_array_equal(first["x"], second["x"])
    _forget(key)
    _run(("test-programs", 2.5, (3, "a")))  # another static key: another program
    assert len(list(store.glob("*.pkl"))) == 2 and TRACES["replica"] == traces + 2


def test_a_torn_entry_is_traced_again_and_rewritten(store):
    key = ("test-programs-torn",)
    _forget(key)
    first = _run(key)
    (entry,) = store.glob("*.pkl")
    entry.write_bytes(entry.read_bytes()[:100])
    _forget(key)
    traces = TRACES["replica"]
    second = _run(key)
    assert TRACES["replica"] == traces + 1
    np.testing.assert_array_equal(first["x"], second["x"])
    _forget(key)
    _run(key)
    assert TRACES["replica"] == traces + 1, "the rewritten entry was not loaded"


def test_new_source_or_libraries_make_a_new_entry(store, monkeypatch):
    key = ("test-programs-env",)
    _forget(key)
    _run(key)
    environment = programs._environment()
    monkeypatch.setattr(programs, "_environment", lambda: environment[:-1] + ("edited source",))
    _forget(key)
    traces = TRACES["replica"]
    _run(key)
    assert TRACES["replica"] == traces + 1 and len(list(store.glob("*.pkl"))) == 2


def test_a_key_without_a_stable_description_stays_in_the_process(store):
    key = ("test-programs-local", lambda x: x)  # defined outside bounds/sims/verify
    _forget(key)
    _run(key)
    assert not list(store.glob("*.pkl"))


def test_a_named_tuple_from_outside_the_packages_is_not_a_plain_tuple():
    Point = collections.namedtuple("Point", "a b")  # this test module: not a described package
    assert programs._describe(Point(1, 2)) is None
    assert programs._describe((1, 2)) is not None


def _two_lambdas():
    return (lambda a, b: a), (lambda a, b: b)


def _scaled(scale):
    return lambda x: scale * x


def test_descriptions_tell_apart_what_changes_a_program(monkeypatch):
    # treat this test module as one of the described packages, to build functions freely
    monkeypatch.setattr(programs, "_PACKAGES", programs._PACKAGES + ("test_programs",))
    d = programs._describe
    first, second = _two_lambdas()
    assert d(first) is not None and d(first) != d(second)      # same qualified name
    assert d(_scaled(2.0)) == d(_scaled(2.0)) != d(_scaled(3.0))  # captured values
    assert d(np.arange(3.0)) != d(np.arange(3.0) + 1e-12)        # array bytes
    assert d(jax.random.key(0)) != d(jax.random.key(1))
    assert d(functools.partial(_scaled, 2.0)) != d(functools.partial(_scaled, 3.0))
    Point = collections.namedtuple("Point", "a b")
    assert d((1, 2)) != d(Point(1, 2))                            # named tuple types
    assert d(_scaled(object())) is None                           # nothing stable to describe
    assert d(np.float64(1.0)) != d(np.float32(1.0))


def test_the_headline_loops_keys_are_described():
    # A4's and the diffusion loops' programs are the ones whose tracing costs (docs/engine.md §6)
    spec = tr.make_spec(steps=20, warmup=2, train_prompts=64)
    assert programs._describe(("transformer-loop", spec, 4, 64, tr.SECTION1)) is not None
    assert programs._describe(("transformer-coupled", spec, 2, 64, True)) is not None
    metric = diffusion.diffusion_tv_metric(Grid(-6.0, 6.0, 64, 1), 4.0, 50)
    assert programs._describe(("trajectory", metric)) is not None
