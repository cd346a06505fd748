"use strict";
const captions = {
  training_curves: "Accuracy and loss per epoch (training, validation; test as a dashed line)",
  confusion_matrix: "Confusion matrix on the 10,000 test images",
  reliability: "Calibration: how often the network is right at each confidence",
  risk_coverage: "How many mistakes are left when the least sure answers are refused",
  confident_mistakes: "The test images the network got wrong with the most confidence",
  predictions_test: "Predictions on the first test images",
  samples_train: "Training digits and their labels",
};
fetch("/api/model").then((r) => r.json()).then((model) => {
  const m = model.metrics || {};
  const percent = (x) => (100 * x).toFixed(2) + "%";
  document.getElementById("accuracy").textContent =
    m.test_accuracy !== undefined ? percent(m.test_accuracy) : "not evaluated";
  if (m.test_loss !== undefined) {
    document.getElementById("details").textContent =
      `test accuracy, loss ${m.test_loss.toFixed(4)}` +
      (m.epochs_trained ? `, after ${m.epochs_trained} epochs` : "") +
      (m.ece !== undefined ? `; expected calibration error ${percent(m.ece)}` : "");
  }
  const c = model.calibration;
  document.getElementById("calibration").textContent = c
    ? `Calibrated: the logits are divided by ${c.temperature.toFixed(3)}, fitted on ` +
      `${c.fitted_on} (its ECE ${percent(c.val_ece_before)} before, ` +
      `${percent(c.val_ece_after)} after).`
    : "Not calibrated: its probabilities are the network's softmax as it is.";
  const table = document.getElementById("config");
  for (const [key, value] of Object.entries(model.config)) {
    const row = table.insertRow();
    row.insertCell().textContent = key;
    row.insertCell().textContent = Array.isArray(value) ? value.join(", ") : String(value);
  }
  const plots = document.getElementById("plots");
  if (!model.plots.length) plots.insertAdjacentHTML("beforeend", "<p>This run has no plots.</p>");
  for (const url of model.plots) {
    const name = url.split("/").pop().replace(".png", "");
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url; img.alt = captions[name] || name;
    const caption = document.createElement("figcaption");
    caption.textContent = captions[name] || name;
    figure.append(img, caption);
    plots.append(figure);
  }
});
