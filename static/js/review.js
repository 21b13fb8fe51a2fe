// Review page keyboard shortcuts: experts repeat these actions hundreds of times a day.
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

  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName);
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const card = cards[current];
    switch (event.key) {
      case "j": focusCard(current + 1); break;
      case "k": focusCard(current - 1); break;
      case "s": if (card) card.querySelector('[data-action="same"]').click(); break;
      case "n": if (card) card.querySelector('[data-action="reject"]').click(); break;
      case "w": { const code = document.getElementById("new-code"); if (code) code.focus(); break; }
      case "u": click('[data-action="undo"]'); break;
      case "[": click('[data-shortcut="["]'); break;
      case "]": click('[data-shortcut="]"]'); break;
      default: return;
    }
    event.preventDefault();
  });
})();
