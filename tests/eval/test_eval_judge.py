import http.server
import json
import math
import random
import socket
import threading

import pytest
import torch

from lco.eval.judge import (
    JudgeError,
    LocalJudge,
    OpenAIJudge,
    fit_length_logistic,
    judge_metrics,
    judge_preferences,
    length_controlled_win_rate,
    win_rate,
)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_length_logistic_recovers_the_generating_parameters():
    rng = random.Random(0)
    diffs = [rng.gauss(0, 300) for _ in range(400)]
    sd = math.sqrt(sum((d - sum(diffs) / 400) ** 2 for d in diffs) / 400)
    prefs = [_sigmoid(-0.4 + 1.5 * math.tanh(d / sd)) for d in diffs]  # longer answers win
    theta, phi = fit_length_logistic(prefs, diffs, l2=0.0)
    assert theta == pytest.approx(-0.4, abs=1e-6) and phi == pytest.approx(1.5, abs=1e-6)
    lengths_ref = [1000] * 400
    lengths_out = [int(1000 + d) for d in diffs]
    assert length_controlled_win_rate(prefs, lengths_out, lengths_ref) == pytest.approx(
        100 * _sigmoid(-0.4), abs=0.05
    )


def test_length_control_discounts_a_win_bought_with_length():
    # the policy wins only where it is longer than the reference
    prefs = [0.9] * 50 + [0.3] * 50
    out_len, ref_len = [2000] * 50 + [500] * 50, [1000] * 100
    assert win_rate(prefs) == pytest.approx(60.0)
    assert length_controlled_win_rate(prefs, out_len, ref_len) < win_rate(prefs)


def test_without_length_differences_lc_equals_the_win_rate():
    prefs = [1.0, 0.0, 1.0, 0.5, 1.0]
    assert length_controlled_win_rate(prefs, [10] * 5, [10] * 5) == pytest.approx(win_rate(prefs), abs=0.01)


def test_unanimous_preferences_give_a_finite_lc_win_rate():
    assert 99.0 < length_controlled_win_rate([1.0] * 10, list(range(10)), [5] * 10) <= 100.0


class AlwaysA:
    def prefer_a(self, prompt):
        return 0.9


def test_the_policy_output_is_shown_in_a_seeded_random_position():
    prefs = judge_preferences(AlwaysA(), ["i"] * 20, ["mine"] * 20, ["ref"] * 20, seed=3)
    rng = random.Random(3)
    assert prefs == pytest.approx([0.9 if rng.random() < 0.5 else 0.1 for _ in range(20)])
    assert min(prefs) == pytest.approx(0.1) and max(prefs) == pytest.approx(0.9)


def test_judge_metrics_count_unusable_answers_and_never_hide_a_total_failure():
    metrics = judge_metrics([1.0, None, 0.0], ["aa", "b", "cccc"], ["a", "b", "c"])
    assert metrics["num_judged"] == 2 and metrics["num_unusable"] == 1 and metrics["win_rate"] == 50.0
    with pytest.raises(JudgeError, match="no usable answer"):
        judge_metrics([None, None], ["a", "b"], ["a", "b"])


def test_local_judge_reads_the_a_versus_b_probability(models):
    judge = LocalJudge(models["old"], torch.device("cpu"))
    prompt = "Which is better? A or B"
    p = judge.prefer_a(prompt)
    with torch.no_grad():
        ids = torch.tensor([judge._encode(prompt)])
        probs = torch.softmax(judge.model(input_ids=ids).logits[0, -1], -1)
    pa, pb = (float(probs[judge.choice_ids[c]].sum()) for c in "AB")
    assert p == pytest.approx(pa / (pa + pb))


class _Endpoint(http.server.BaseHTTPRequestHandler):
    reply: dict = {}
    status = 200
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers["Authorization"], body))
        payload = json.dumps(self.reply).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    _Endpoint.seen, _Endpoint.status = [], 200
    server = http.server.HTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _Endpoint
    server.shutdown()


def test_openai_endpoint_preference_from_top_logprobs(endpoint):
    url, handler = endpoint
    handler.reply = {
        "choices": [
            {
                "message": {"content": "A"},
                "logprobs": {
                    "content": [
                        {
                            "top_logprobs": [
                                {"token": "A", "logprob": math.log(0.6)},
                                {"token": "B", "logprob": math.log(0.2)},
                            ]
                        }
                    ]
                },
            }
        ]
    }
    judge = OpenAIJudge(url, "gpt-4o-2024-11-20", api_key_env="JUDGE_KEY", max_retries=0)
    assert judge.prefer_a("prompt") == pytest.approx(0.75)
    path, auth, body = handler.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "gpt-4o-2024-11-20" and body["max_tokens"] == 1 and body["logprobs"] is True


def test_openai_endpoint_without_logprobs_uses_the_letter(endpoint):
    url, handler = endpoint
    handler.reply = {"choices": [{"message": {"content": "B"}}]}
    assert OpenAIJudge(url, "m", api_key_env="JUDGE_KEY", max_retries=0).prefer_a("p") == 0.0


def test_a_rejected_key_is_a_clear_error(endpoint):
    url, handler = endpoint
    handler.status, handler.reply = 401, {"error": "invalid key"}
    with pytest.raises(JudgeError, match=r"rejected the API key from \$JUDGE_KEY \(HTTP 401"):
        OpenAIJudge(url, "m", api_key_env="JUDGE_KEY", max_retries=0).check()


def test_an_unreachable_judge_raises_instead_of_being_skipped(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAIJudge(f"http://127.0.0.1:{port}/v1", "m", api_key_env="JUDGE_KEY", max_retries=0, timeout=5)
    with pytest.raises(
        JudgeError, match=r"judge endpoint http://127.0.0.1:\d+/v1/chat/completions is unreachable"
    ):
        judge.check()


def test_a_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="environment variable NO_SUCH_KEY_VAR"):
        OpenAIJudge("https://example.invalid/v1", "m", api_key_env="NO_SUCH_KEY_VAR")
