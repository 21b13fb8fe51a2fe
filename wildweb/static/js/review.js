// Review page: keyboard shortcuts (experts repeat these actions hundreds of times a day), the
// "which individual?" search box, and redrawing a photo's box on a canvas overlay.
(function () {
  const cards = Array.from(document.querySelectorAll(".candidate"));
  let current = 0;

  function focusCard(index) {
    if (!cards.length) return;
    cards[current].classList.remove("current");
    current = (index + cards.length) % cards.length;
    cards[current].classList.add("current");
    cards[current].focus({ preventScroll: true });
    cards[current].scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function click(selector) {
    const button = document.querySelector(selector);
    if (button) button.click();
  }

  function openSearch() {
    const panel = document.getElementById("which-individual");
    if (!panel) return;
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
    document.getElementById("which-individual-q").focus();
  }
  const which = document.querySelector('[data-action="which"]');
  if (which) which.addEventListener("click", openSearch);

  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName);
    if (event.key === "Escape" && event.target.id === "which-individual-q") {
      document.getElementById("which-individual").hidden = true;
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const card = cards[current];
    switch (event.key) {
      case "j": focusCard(current + 1); break;
      case "k": focusCard(current - 1); break;
      case "s": if (card) card.querySelector('[data-action="same"]').click(); break;
      case "n": if (card) card.querySelector('[data-action="reject"]').click(); break;
      case "w": openSearch(); break;
      case "u": click('[data-action="undo"]'); break;
      case "[": click('[data-shortcut="["]'); break;
      case "]": click('[data-shortcut="]"]'); break;
      default: return;
    }
    event.preventDefault();
  });

  // Box editing: pointer events on a canvas over the photo work alike for mouse, pen and touch,
  // and the image itself is never dragged.
  document.querySelectorAll(".animal-photo").forEach((item) => {
    const frame = item.querySelector(".boxed");
    const canvas = item.querySelector("canvas.box-editor");
    const start = item.querySelector("[data-edit-box]");
    if (!canvas || !start) return;
    const form = item.querySelector("form.photo-edit");
    const width = Number(frame.dataset.width), height = Number(frame.dataset.height);
    let origin = null, box = null;

    function draw() {
      const context = canvas.getContext("2d");
      context.clearRect(0, 0, canvas.width, canvas.height);
      if (!box) return;
      context.strokeStyle = "#f0b400";
      context.lineWidth = 3;
      context.strokeRect(box[0], box[1], box[2], box[3]);
    }
    function point(event) {
      const rect = canvas.getBoundingClientRect();
      return [
        Math.max(0, Math.min(event.clientX - rect.left, rect.width)),
        Math.max(0, Math.min(event.clientY - rect.top, rect.height)),
      ];
    }
    start.addEventListener("click", () => {
      canvas.hidden = false;
      canvas.width = frame.clientWidth;
      canvas.height = frame.clientHeight;
      frame.querySelector(".box").hidden = true;
      draw();
    });
    canvas.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      origin = point(event);
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!origin) return;
      const [x, y] = point(event);
      box = [Math.min(x, origin[0]), Math.min(y, origin[1]), Math.abs(x - origin[0]), Math.abs(y - origin[1])];
      draw();
    });
    canvas.addEventListener("pointerup", () => {
      if (!origin || !box) return;
      origin = null;
      const scale = width / canvas.width;
      const pixels = box.map((value) => Math.round(value * scale));
      pixels[2] = Math.min(pixels[2], width - pixels[0]);
      pixels[3] = Math.min(pixels[3], height - pixels[1]);
      ["x", "y", "w", "h"].forEach((name, index) => {
        form.querySelector(`[name="bbox_${name}"]`).value = pixels[index];
      });
    });
  });
})();
