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

  function preview(file, index) {
    const wrap = document.createElement("div");
    wrap.className = "preview";
    const img = document.createElement("img");
    img.alt = "Preview of " + file.name;
    img.src = URL.createObjectURL(file);
    const box = document.createElement("div");
    box.className = "box";
    box.hidden = true;
    wrap.append(img, box);
    let start = null;
    wrap.addEventListener("pointerdown", (e) => {
      const r = img.getBoundingClientRect();
      start = [e.clientX - r.left, e.clientY - r.top];
      wrap.setPointerCapture(e.pointerId);
    });
    wrap.addEventListener("pointermove", (e) => {
      if (!start) return;
      const r = img.getBoundingClientRect();
      const x = Math.max(0, Math.min(e.clientX - r.left, r.width));
      const y = Math.max(0, Math.min(e.clientY - r.top, r.height));
      Object.assign(box.style, {
        left: Math.min(x, start[0]) + "px", top: Math.min(y, start[1]) + "px",
        width: Math.abs(x - start[0]) + "px", height: Math.abs(y - start[1]) + "px",
      });
      box.hidden = false;
    });
    wrap.addEventListener("pointerup", () => {
      if (!start) return;
      start = null;
      const scale = img.naturalWidth / img.clientWidth;
      const b = [box.offsetLeft, box.offsetTop, box.offsetWidth, box.offsetHeight].map((v) => Math.round(v * scale));
      boxes[index] = b[2] > 4 && b[3] > 4 ? b : null;
      box.hidden = boxes[index] === null;
      saveBoxes();
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
