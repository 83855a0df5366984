import os

import pytest

from thce.utils.errors import UserError
from thce.utils.models import (
    EMBEDDED_MODEL_ID,
    describe_model,
    resolve_model,
    select_precision,
    thce_home,
)


def test_embedded_model_resolves_offline_to_a_safetensors_checkpoint(smollm2_path):
    resolved = resolve_model(EMBEDDED_MODEL_ID)
    assert resolved.origin in {"embedded-cache", "hub-cache"}
    assert (resolved.path / "config.json").is_file()
    assert any(resolved.path.glob("*.safetensors"))
    details = describe_model(resolved)
    assert details["parameters"].startswith("134,515,008")
    assert details["layers"] == 30 and details["hidden_size"] == 576 and details["vocab_size"] == 49152


def test_local_path_wins(tmp_path, smollm2_path):
    resolved = resolve_model(smollm2_path)
    assert resolved.origin == "local" and resolved.path == smollm2_path


@pytest.mark.parametrize(
    "name", ["./no/such/dir", "/definitely/not/here", "not-a-hub-id", "org/unknown-model"]
)
def test_unresolvable_models_are_user_errors(name):
    with pytest.raises(UserError):
        resolve_model(name)


def test_a_directory_without_config_is_not_a_model(tmp_path):
    with pytest.raises(UserError, match="not a model checkpoint"):
        resolve_model(tmp_path)


def test_thce_home_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("THCE_HOME", str(tmp_path / "home"))
    assert thce_home() == tmp_path / "home"
    monkeypatch.delenv("THCE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert thce_home() == tmp_path / "xdg" / "thce"


def test_precision_selection(monkeypatch):
    import thce.utils.models as models

    assert select_precision(requested="fp16") == "fp16"
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert select_precision("cpu") == "bf16"
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)
    assert select_precision("cpu") == "fp32"
    assert select_precision("mps") == "fp32"


def test_the_real_model_generates_through_the_chat_template(smollm2_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thce.utils.medical_chat_templates import prepare_model, prepare_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    # Our template and pad/eos handling, with a general question so "coherent" is checkable.
    prepare_tokenizer(tokenizer, "stage_1", system_message="You are a helpful AI assistant.")
    prepare_model(model, tokenizer)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is hypertension?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).lower()
    assert "blood" in text or "pressure" in text, text
    assert os.environ["HF_HUB_OFFLINE"] == "1"
