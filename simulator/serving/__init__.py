"""The serving engine in simulated time: a SimPy process per replica, one event per batch
step, a token-budget scheduler over a paged KV cache, routers, engine presets, metrics,
the Perfetto timeline and the run's output files.

    build_deployment / load_deployment ─► resolve ─► simulate(deployment, trace)
         (config.py)                     (engine.py)       └─► SimulationResult
                                                                 └─► write_outputs (outputs.py)

    engine.py ─► replica.py (one SimPy process) ─► scheduler.py ─► kv_cache.py
                      │                               └─ policies.py, request.py
                      └─► cost model (profiles) ─► metrics.py, timeline.py (recorders)

Its public names are re-exported by ``simulator`` (``from simulator import simulate``),
which is where users import them from; this package lists none of its own, so the API
is stated once.
"""

__all__: list[str] = []
