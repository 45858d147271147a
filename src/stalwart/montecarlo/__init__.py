"""Monte Carlo design of the trial: operating characteristics of the protocol under scenarios.

* :mod:`~stalwart.montecarlo.scenarios`: the scenario file (overrides, null, sweep, looks).
* :mod:`~stalwart.montecarlo.engine`: one block of replicate trials simulated and analysed with
  the batched kernels (the plan's primary and time-to-event analyses, interim looks).
* :mod:`~stalwart.montecarlo.sequential`: group-sequential looks (Lan-DeMets efficacy boundaries
  for the primary endpoint, a one-sided harm boundary on the safety log-rank).
* :mod:`~stalwart.montecarlo.executors`: where blocks run: in-process, a process pool, Dask.
* :mod:`~stalwart.montecarlo.summary`: per-replicate results reduced to operating
  characteristics (power, type I error, intervals, events, hazard-ratio distribution).
* :mod:`~stalwart.montecarlo.study`: the ``stalwart simulate`` study: scenarios, null, sweep,
  oc.json and the power-curve figure.
"""
