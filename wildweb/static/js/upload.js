// Upload form: previews of the chosen photos, an optional box drawn on each, and the date and
// place prefilled from the first photo's EXIF (read by the server, which knows every format).
(function () {
  const form = document.getElementById("sighting-form");
  if (!form) return;
  const input = form.querySelector('input[type="file"]');
  const previews = document.getElementById("previews");
  const boxesField = form.querySelector('input[name="bboxes"]');
  let boxes = [];

  function saveBoxes() { boxesField.value = JSON.stringify(boxes); }

  // A box is drawn with pointer events on a canvas laid over the preview, so a mouse, a pen
  // and a finger all work: the image itself is not draggable (Chromium would start a native
  // image drag and cancel the pointer), the canvas has touch-action: none (no scrolling while
  // drawing), and the pointer is captured so the box follows it outside the photo.
  function preview(file, index) {
    const wrap = document.createElement("div");
    wrap.className = "preview";
    const img = document.createElement("img");
    img.alt = "Preview of " + file.name;
    img.draggable = false;
    img.src = URL.createObjectURL(file);
    const canvas = document.createElement("canvas");
    canvas.className = "box-canvas";
    canvas.setAttribute("aria-label", "Drag on the photo to draw a box around the animal");
    wrap.append(img, canvas);
    let start = null;
    let box = null; // [x, y, w, h] in pixels of the displayed preview

    function point(e) {
      const r = canvas.getBoundingClientRect();
      return [Math.max(0, Math.min(e.clientX - r.left, r.width)),
              Math.max(0, Math.min(e.clientY - r.top, r.height))];
    }
    function draw() {
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(canvas.clientWidth * ratio);
      canvas.height = Math.round(canvas.clientHeight * ratio);
      const context = canvas.getContext("2d");
      context.setTransform(ratio, 0, 0, ratio, 0, 0);
      context.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
      if (!box) return;
      context.lineWidth = 2;
      context.strokeStyle = "#f0b400";
      context.strokeRect(box[0], box[1], box[2], box[3]);
    }
    function stretch(e) {
      const [x, y] = point(e);
      box = [Math.min(x, start[0]), Math.min(y, start[1]),
             Math.abs(x - start[0]), Math.abs(y - start[1])];
      draw();
    }
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      canvas.setPointerCapture(e.pointerId);
      start = point(e);
      box = null;
      draw();
    });
    canvas.addEventListener("pointermove", (e) => { if (start) stretch(e); });
    function finish(e) {
      if (!start) return;
      if (e.type === "pointerup") stretch(e);
      start = null;
      // Stored in pixels of the photo itself, which the server keeps upright as shown here.
      const scale = img.naturalWidth / canvas.clientWidth;
      const stored = box && box.map((v) => Math.round(v * scale));
      boxes[index] = stored && stored[2] > 4 && stored[3] > 4 ? stored : null;
      if (!boxes[index]) box = null;
      canvas.dataset.box = boxes[index] ? boxes[index].join(",") : "";
      draw();
      saveBoxes();
    }
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    img.addEventListener("load", draw);
    window.addEventListener("resize", () => {
      // The box keeps its place on the photo when the preview is resized.
      if (boxes[index]) {
        const scale = canvas.clientWidth / img.naturalWidth;
        box = boxes[index].map((v) => v * scale);
      }
      draw();
    });
    previews.append(wrap);
  }

  async function prefill(file) {
    const data = new FormData();
    data.append("photo", file);
    data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    const response = await fetch(form.dataset.exifUrl, { method: "POST", body: data });
    if (!response.ok) return;
    const exif = await response.json();
    const fill = (name, value) => {
      const field = form.querySelector(`[name="${name}"]`);
      if (field && !field.value && value !== null) field.value = value;
    };
    fill("observed_at", exif.observed_at);
    fill("latitude", exif.latitude);
    fill("longitude", exif.longitude);
    const map = document.getElementById("location-map");
    if (map) map.dispatchEvent(new Event("wildweb:location"));
  }

  // Drag and drop: dropped photos join those already chosen, in the same file input, so the
  // form posts them as usual.
  const dropzone = document.getElementById("dropzone");
  const dropStatus = document.getElementById("drop-status");
  if (dropzone && window.DataTransfer) {
    ["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (e) => {
      e.preventDefault();
      dropzone.classList.add("dragging");
    }));
    ["dragleave", "drop"].forEach((type) => dropzone.addEventListener(type, () => {
      dropzone.classList.remove("dragging");
    }));
    dropzone.addEventListener("drop", (e) => {
      e.preventDefault();
      const dropped = Array.from(e.dataTransfer.files);
      const photos = dropped.filter((file) => file.type.startsWith("image/"));
      const merged = new DataTransfer();
      Array.from(input.files).forEach((file) => merged.items.add(file));
      photos.forEach((file) => merged.items.add(file));
      input.files = merged.files;
      input.dispatchEvent(new Event("change"));
      const skipped = dropped.length - photos.length;
      dropStatus.textContent = `${input.files.length} photo(s) chosen.` +
        (skipped ? ` ${skipped} file(s) were not images and were left out.` : "");
    });
  }

  input.addEventListener("change", () => {
    previews.replaceChildren();
    boxes = Array.from(input.files).map(() => null);
    saveBoxes();
    Array.from(input.files).forEach(preview);
    if (input.files.length) prefill(input.files[0]);
  });
})();
