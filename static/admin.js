// Progressive enhancement only: every page works without JavaScript.
// Forms with data-confirm ask before submitting (deletions, revocations).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
