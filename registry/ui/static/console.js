// mlmodel ui: the predict page's drawing pad and file drop (no framework, no build step).
"use strict";
(function () {
  const pad = document.getElementById("pad");
  if (!pad) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const ctx = pad.getContext("2d");
  const status = document.getElementById("status");
  const bars = document.getElementById("bars");
  const noServer = document.getElementById("no-server");
  let drawing = false;
  let dropped = null; // base64 of a dropped file, sent instead of the pad

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    dropped = null;
  }
  function point(event) {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * pad.width / box.width,
            (event.clientY - box.top) * pad.height / box.height];
  }
  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    dropped = null;
    const [x, y] = point(event);
    ctx.beginPath();
    ctx.moveTo(x, y);
    pad.setPointerCapture(event.pointerId);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    ctx.lineTo(x, y);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 22;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.stroke();
  });
  for (const name of ["pointerup", "pointercancel", "pointerleave"]) {
    pad.addEventListener(name, () => { drawing = false; });
  }

  // The pad, scaled to the model's 28 x 28 as MNIST's digits are, as a PNG in base64.
  function padImage() {
    const small = document.createElement("canvas");
    small.width = 28;
    small.height = 28;
    const sctx = small.getContext("2d");
    sctx.imageSmoothingEnabled = true;
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(pad, 0, 0, 28, 28);
    return small.toDataURL("image/png").split(",")[1];
  }

  function show(answer) {
    bars.replaceChildren();
    const best = answer.probabilities.indexOf(Math.max(...answer.probabilities));
    answer.probabilities.forEach((p, i) => {
      const row = document.createElement("div");
      row.className = "bar" + (i === best ? " top" : "");
      row.dataset.class = answer.class_names[i];
      const name = document.createElement("span");
      name.textContent = answer.class_names[i];
      const track = document.createElement("span");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = (p * 100).toFixed(1) + "%";
      fill.style.display = "block";
      track.appendChild(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = (p * 100).toFixed(1) + "%";
      row.append(name, track, value);
      bars.appendChild(row);
    });
    status.textContent = "";
    const head = document.createElement("b");
    head.id = "prediction";
    head.textContent = answer.class_names[best];
    status.append("Prediction: ", head, " (" + answer.model + " via " + answer.signature + ")");
  }

  async function send() {
    const form = document.getElementById("predict-form");
    const data = new FormData(form);
    const body = {
      model: data.get("model"), version: data.get("version") || null,
      label: data.get("label") || null, signature: data.get("signature"),
      image_b64: dropped || padImage(),
    };
    status.textContent = "Asking the model server…";
    noServer.hidden = true;
    let response;
    try {
      response = await fetch("/api/predict", {
        method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify(body),
      });
    } catch (error) {
      status.textContent = "The console did not answer: " + error;
      return;
    }
    const answer = await response.json();
    if (response.ok) {
      show(answer);
      return;
    }
    bars.replaceChildren();
    status.textContent = answer.error || ("HTTP " + response.status);
    if (response.status === 503) {
      noServer.hidden = false;
      document.getElementById("no-server-text").textContent = answer.error + ". " + (answer.hint || "");
    }
  }

  function readFile(file) {
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      dropped = String(reader.result).split(",")[1];
      const image = new Image();
      image.onload = () => {
        ctx.fillStyle = "#000";
        ctx.fillRect(0, 0, pad.width, pad.height);
        ctx.drawImage(image, 0, 0, pad.width, pad.height);
        send();
      };
      image.src = String(reader.result);
    };
    reader.readAsDataURL(file);
  }
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    readFile(event.dataTransfer.files[0]);
  });
  document.getElementById("file").addEventListener("change", (event) => readFile(event.target.files[0]));
  document.getElementById("clear").addEventListener("click", () => {
    clear();
    bars.replaceChildren();
    status.textContent = "Draw, then press Predict.";
  });
  document.getElementById("send").addEventListener("click", send);
  clear();
})();
