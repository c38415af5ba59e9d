//! Every registered plugin, at two sizes: its analytic parameter count
//! equals the built model's, and five training steps on a fixed batch give
//! a finite, falling masked-LM loss.
use models::{registry, EncoderInput, KnobValues, Plugin};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn knobs(plugin: &dyn Plugin, json: serde_json::Value) -> KnobValues {
    plugin.resolve(json.as_object().unwrap()).unwrap_or_else(|e| panic!("{}: {e}", plugin.name()))
}

/// Masked-LM loss of predicting a fixed batch's tokens at every fourth position.
fn loss(model: &dyn models::MaskedLm, input: &EncoderInput) -> Tensor {
    let hidden = model.encode(input, true);
    let positions = Tensor::arange_start_step(0, input.input_ids.size()[1], 4, (Kind::Int64, Device::Cpu));
    let picked = hidden.index_select(1, &positions);
    let targets = input.input_ids.index_select(1, &positions);
    let logits = model.mlm_logits(&picked);
    let vocab = logits.size()[2];
    logits.view([-1, vocab]).cross_entropy_for_logits(&targets.view([-1]))
}

#[test]
fn every_plugin_counts_its_parameters_and_learns() {
    assert!(registry::names().len() >= 3, "{:?}", registry::names());
    for plugin in registry::all() {
        for size in [
            serde_json::json!({"layers": 1, "hidden": 32, "heads": 2, "vocab_size": 120, "max_position": 64}),
            serde_json::json!({"layers": 3, "hidden": 48, "heads": 3, "intermediate": 80, "vocab_size": 97, "max_position": 32, "dropout": 0.0}),
        ] {
            let knobs = knobs(*plugin, size.clone());
            tch::manual_seed(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = plugin.build(&vs.root(), &knobs).unwrap();
            let built: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
            assert_eq!(plugin.param_count(&knobs).unwrap(), built, "{} {size}", plugin.name());
            let flops = |seq| plugin.flops_per_token(&knobs, seq).unwrap();
            assert!(flops(16) > 6 * (built / 2) && flops(32) > flops(16), "{}: {}", plugin.name(), flops(16));

            let ids = Tensor::randint(90, [4, 16], (Kind::Int64, Device::Cpu));
            let input = EncoderInput { token_type_ids: ids.zeros_like(), input_ids: ids, attention_mask: None };
            let mut optimizer = nn::Adam::default().build(&vs, 3e-3).unwrap();
            let mut losses = Vec::new();
            for _ in 0..5 {
                let l = loss(model.as_ref(), &input);
                optimizer.backward_step(&l);
                losses.push(l.double_value(&[]));
            }
            let last = loss(model.as_ref(), &input).double_value(&[]);
            assert!(last.is_finite() && last < losses[0], "{} {size}: losses {losses:?} then {last}", plugin.name());
        }
    }
}

#[test]
fn every_plugin_builds_sequence_classifiers_and_regressors_that_learn() {
    for plugin in registry::all() {
        let knobs = knobs(*plugin, serde_json::json!({"layers": 2, "hidden": 32, "heads": 2, "vocab_size": 100, "max_position": 32}));
        let ids = Tensor::randint(100, [6, 12], (Kind::Int64, Device::Cpu));
        let input = EncoderInput { token_type_ids: ids.zeros_like(), input_ids: ids, attention_mask: None };
        for labels in [3i64, 1] {
            tch::manual_seed(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = plugin.build_classifier(&vs.root(), &knobs, labels).unwrap();
            let targets = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
            let loss = || {
                let logits = model.logits(&input, true);
                assert_eq!(logits.size(), [6, labels]);
                if labels == 1 {
                    logits.squeeze_dim(1).mse_loss(&targets.to_kind(Kind::Float), tch::Reduction::Mean)
                } else {
                    logits.cross_entropy_for_logits(&targets)
                }
            };
            let mut optimizer = nn::Adam::default().build(&vs, 3e-3).unwrap();
            let first = loss();
            optimizer.backward_step(&first);
            for _ in 0..4 {
                optimizer.backward_step(&loss());
            }
            let (first, last) = (first.double_value(&[]), loss().double_value(&[]));
            assert!(last.is_finite() && last < first, "{} labels={labels}: {first} -> {last}", plugin.name());
            if plugin.name() == "bert" {
                // Hugging Face's BertForSequenceClassification names.
                let names = vs.variables();
                assert!(names.contains_key("bert.pooler.dense.weight") && names.contains_key("classifier.bias"), "{:?}", names.keys());
            }
        }
    }
}
