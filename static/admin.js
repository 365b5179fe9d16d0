// Progressive enhancement only: every page works without JavaScript.
// Forms with data-confirm ask before submitting (deletions, revocations).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A colour picker and its text box (data-color-text / data-color-picker name the other one's id) follow each other.
document.addEventListener("input", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement)) {
    return;
  }
  const other = document.getElementById(input.dataset.colorText || input.dataset.colorPicker || "");
  if (!(other instanceof HTMLInputElement)) {
    return;
  }
  const value = input.value.trim();
  if (input.dataset.colorText || /^#[0-9a-fA-F]{6}$/.test(value)) {
    other.value = value.toLowerCase();
  }
});
