"""llama.cpp `llama-server --metrics`, rendered from the queueing model.

The families, types and HELP texts are those of the real capture
`tests/fixtures/upstream/llamacpp-post-pr13660.prom`: no labels at all, counters that are
really an average (`n_busy_slots_per_decode`), throughput gauges, slots processing and requests
deferred. Like llama-server, an average with nothing to average is printed `nan`. Sample:

    llamacpp:prompt_tokens_total 33065
    llamacpp:requests_processing 2

The server's slots are the model's `max_num_seqs`; one decode call is one engine step.
"""

from __future__ import annotations

from inferwatch.simulators.model import Observer, Simulation, Step

VERSION = "b6123"
CONTENT_TYPE = "text/plain; version=0.0.4"


def _number(value: float) -> str:
    if value != value:
        return "nan"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class LlamacppWriter(Observer):
    """Renders a simulation as llama-server's `/metrics` page."""

    version = VERSION
    content_type = CONTENT_TYPE

    def __init__(self, sim: Simulation, model: str):
        self.sim = sim
        self.model = model
        self.prompt_tokens = 0
        self.prompt_seconds = 0.0
        self.predicted_tokens = 0
        self.predicted_seconds = 0.0
        self.decodes = 0
        self.busy_slots = 0
        sim.subscribe(self)

    def stepped(self, step: Step) -> None:
        self.decodes += 1
        self.busy_slots += len({req.id for req, _gap in step.tokens}) or step.decode_seqs
        self.prompt_tokens += step.prefill_tokens
        self.prompt_seconds += step.prefill_seconds
        self.predicted_tokens += len(step.tokens)
        self.predicted_seconds += step.decode_seconds

    def observe_http(self, *_args: object) -> None:
        """llama-server's page has no HTTP metrics."""

    def render(self) -> bytes:
        engines = self.sim.engines
        nan = float("nan")

        def ratio(a: float, b: float) -> float:
            return a / b if b else nan

        # Throughputs are printed with llama-server's precision, a few significant digits.
        prompt_rate = (
            round(ratio(self.prompt_tokens, self.prompt_seconds), 3) if self.prompt_seconds else 0
        )
        predicted_rate = (
            round(ratio(self.predicted_tokens, self.predicted_seconds), 4)
            if self.predicted_seconds
            else 0
        )
        metrics = (
            ("prompt_tokens_total", "counter", "Number of prompt tokens processed.",
             self.prompt_tokens),
            ("prompt_seconds_total", "counter", "Prompt process time",
             round(self.prompt_seconds, 3)),
            ("tokens_predicted_total", "counter", "Number of generation tokens processed.",
             self.predicted_tokens),
            ("tokens_predicted_seconds_total", "counter", "Predict process time",
             round(self.predicted_seconds, 3)),
            ("n_decode_total", "counter", "Total number of llama_decode() calls", self.decodes),
            ("n_busy_slots_per_decode", "counter",
             "Average number of busy slots per llama_decode() call",
             ratio(self.busy_slots, self.decodes)),
            ("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
             prompt_rate),
            ("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
             predicted_rate),
            ("requests_processing", "gauge", "Number of requests processing.",
             sum(e.num_running for e in engines)),
            ("requests_deferred", "gauge", "Number of requests deferred.",
             sum(e.num_waiting for e in engines)),
        )  # fmt: skip
        out: list[str] = []
        for name, kind, help_, value in metrics:
            out.append(f"# HELP llamacpp:{name} {help_}")
            out.append(f"# TYPE llamacpp:{name} {kind}")
            out.append(f"llamacpp:{name} {_number(value)}")
        return ("\n".join(out) + "\n").encode()

    def props(self) -> dict:
        """`GET /props` of llama-server."""
        cfg = self.sim.config
        return {
            "model_path": f"/models/{self.model}",
            "total_slots": cfg.max_num_seqs,
            "build_info": VERSION,
            "default_generation_settings": {"n_ctx": cfg.max_model_len},
        }
